# The Java binding (JNI over the C API): earn.jar (package earn: Recommender, Result, IdResult, EarnException) and
# libearn_jni.so, which links libearn.so. Built when a JDK (javac + jni.h) is found; otherwise one line says
# so and everything else builds as before. Off by default inside the Python wheel build.
if(DEFINED SKBUILD)
  set(_earn_java_default OFF)
else()
  set(_earn_java_default ON)
endif()
option(EARN_BUILD_JAVA "build the Java binding (needs a JDK >= 11)" ${_earn_java_default})
if(NOT EARN_BUILD_JAVA)
  return()
endif()

find_package(Java 11 COMPONENTS Development QUIET)
unset(_earn_jni_include)
if(Java_JAVAC_EXECUTABLE)
  # jni.h lives in the JDK beside javac (FindJNI would also demand AWT, which headless JDKs lack)
  get_filename_component(_javac "${Java_JAVAC_EXECUTABLE}" REALPATH)
  get_filename_component(_jdk "${_javac}" DIRECTORY)
  get_filename_component(_jdk "${_jdk}" DIRECTORY)
  find_path(_earn_jni_include jni.h HINTS "$ENV{JAVA_HOME}/include" "${_jdk}/include" NO_CACHE)
endif()
if(NOT Java_FOUND OR NOT _earn_jni_include OR NOT EXISTS "${_earn_jni_include}/linux/jni_md.h")
  message(STATUS "libearn: Java binding not built: no JDK >= 11 with javac and jni.h found (install openjdk-17-jdk-headless or set JAVA_HOME)")
  return()
endif()
message(STATUS "libearn: Java binding with ${Java_JAVAC_EXECUTABLE} (Java ${Java_VERSION_STRING})")

include(UseJava)
set(CMAKE_JAVA_COMPILE_FLAGS --release 11)
add_jar(earn_jar
  SOURCES java/earn/Recommender.java java/earn/Result.java java/earn/IdResult.java java/earn/EarnException.java
  OUTPUT_NAME earn)
add_library(earn_jni SHARED java/earn_jni.cpp)
target_include_directories(earn_jni SYSTEM PRIVATE "${_earn_jni_include}" "${_earn_jni_include}/linux")
target_link_libraries(earn_jni PRIVATE earn)
target_compile_options(earn_jni PRIVATE -Wall -Wextra)
set_target_properties(earn_jni PROPERTIES CXX_VISIBILITY_PRESET hidden
                      INSTALL_RPATH "$ORIGIN" BUILD_RPATH "$<TARGET_FILE_DIR:earn>")
if(NOT DEFINED SKBUILD)
  install(TARGETS earn_jni LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}")
  install_jar(earn_jar DESTINATION "${CMAKE_INSTALL_DATADIR}/java")
endif()
