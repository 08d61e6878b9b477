# earn_find_ort_headers(): the one search for the ONNX Runtime C/C++ API headers (onnxruntime_cxx_api.h), shared by
# libearn (cpp/CMakeLists.txt) and the custom-op library (plugins/CMakeLists.txt) so that both builds agree on
# where the headers are. Order: the ORT_INCLUDE_DIR cache variable (-DORT_INCLUDE_DIR=...), then $ORT_INCLUDE_DIR,
# then /usr/include/onnxruntime, /usr/local/include/onnxruntime, then ../shared/third_party/onnxruntime/
# 1.27.1-include beside the repository (CI). Sets the cache variable ORT_INCLUDE_DIR to the first directory that
# holds the header, and ORT_HEADERS_FOUND (TRUE/FALSE) in the caller's scope.
set(_earn_ort_repo_parent "${CMAKE_CURRENT_LIST_DIR}/../../..")

function(earn_find_ort_headers)
  set(ORT_INCLUDE_DIR "$ENV{ORT_INCLUDE_DIR}" CACHE PATH "ONNX Runtime C/C++ API headers (onnxruntime_cxx_api.h)")
  if(NOT ORT_INCLUDE_DIR OR NOT EXISTS "${ORT_INCLUDE_DIR}/onnxruntime_cxx_api.h")
    if(ORT_INCLUDE_DIR)
      message(STATUS "ORT_INCLUDE_DIR=${ORT_INCLUDE_DIR} has no onnxruntime_cxx_api.h; searching the default places")
    endif()
    foreach(dir /usr/include/onnxruntime /usr/local/include/onnxruntime
                "${_earn_ort_repo_parent}/shared/third_party/onnxruntime/1.27.1-include")
      if(EXISTS "${dir}/onnxruntime_cxx_api.h")
        get_filename_component(dir "${dir}" ABSOLUTE)
        set(ORT_INCLUDE_DIR "${dir}" CACHE PATH "ONNX Runtime C/C++ API headers" FORCE)
        break()
      endif()
    endforeach()
  endif()
  if(EXISTS "${ORT_INCLUDE_DIR}/onnxruntime_cxx_api.h")
    set(ORT_HEADERS_FOUND TRUE PARENT_SCOPE)
  else()
    set(ORT_HEADERS_FOUND FALSE PARENT_SCOPE)
  endif()
endfunction()
