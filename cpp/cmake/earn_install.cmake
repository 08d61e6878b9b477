# Install rules of the standalone build: headers, libearn.so with its soname links, the CMake package
# (earnConfig.cmake, earnConfigVersion.cmake, earnTargets.cmake exporting earn::earn), a pkg-config file and
# earn-recommend. Every file is written relative to the prefix, so `cmake --install build --prefix P` works for
# any P chosen at install time.
include(CMakePackageConfigHelpers)
set(EARN_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/earn")

install(TARGETS earn EXPORT earnTargets
        LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
        INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(DIRECTORY include/earn DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(TARGETS earn-recommend RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
set_target_properties(earn-recommend PROPERTIES INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")

install(EXPORT earnTargets NAMESPACE earn:: FILE earnTargets.cmake DESTINATION "${EARN_CMAKE_DIR}")
configure_package_config_file(cmake/earnConfig.cmake.in "${CMAKE_CURRENT_BINARY_DIR}/earnConfig.cmake"
                              INSTALL_DESTINATION "${EARN_CMAKE_DIR}")
# the soname (EARN_SOVERSION) changes with every ABI break; as 0.x minors may change the C++ API, only the same
# major.minor satisfies find_package(earn 0.1)
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/earnConfigVersion.cmake"
                                 VERSION "${PROJECT_VERSION}" COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/earnConfig.cmake" "${CMAKE_CURRENT_BINARY_DIR}/earnConfigVersion.cmake"
        DESTINATION "${EARN_CMAKE_DIR}")

# pkg-config: the prefix is found from the .pc file's own place (${pcfiledir}), so the file is relocatable
file(RELATIVE_PATH EARN_PC_TO_PREFIX "/root/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/root")
string(REGEX REPLACE "/$" "" EARN_PC_TO_PREFIX "${EARN_PC_TO_PREFIX}")
configure_file(cmake/earn.pc.in "${CMAKE_CURRENT_BINARY_DIR}/earn.pc" @ONLY)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/earn.pc" DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
