# The core and the CPU codec, shared by libqcomm and the standalone GPU check build
# (tests/gpu/CMakeLists.txt), which must build on a GPU machine with nothing but CUDA and CMake.
set(QCOMM_LIB_DIR ${CMAKE_CURRENT_LIST_DIR})

function(qcomm_add_codec_sources target)
  target_sources(${target} PRIVATE
    ${QCOMM_LIB_DIR}/core/crc32c.cc
    ${QCOMM_LIB_DIR}/core/env.cc
    ${QCOMM_LIB_DIR}/core/executor.cc
    ${QCOMM_LIB_DIR}/core/status.cc
    ${QCOMM_LIB_DIR}/codec/qsgd_cpu.cc
    ${QCOMM_LIB_DIR}/codec/qsgd_cpu_dispatch.cc
    ${QCOMM_LIB_DIR}/codec/qsgd_cpu_generic.cc
    ${QCOMM_LIB_DIR}/codec/qsgd_options.cc
    ${QCOMM_LIB_DIR}/codec/wire.cc
    ${QCOMM_LIB_DIR}/codec/any_codec.cc
    ${QCOMM_LIB_DIR}/codec/quant/dynamic.cc
    ${QCOMM_LIB_DIR}/codec/quant/linear.cc
    ${QCOMM_LIB_DIR}/codec/quant/percentile.cc
    ${QCOMM_LIB_DIR}/codec/quant/quant_options.cc
    ${QCOMM_LIB_DIR}/codec/quant/quant_wire.cc
    ${QCOMM_LIB_DIR}/codec/quant/quantize.cc
    ${QCOMM_LIB_DIR}/codec/quant/quant_cpu_dispatch.cc
    ${QCOMM_LIB_DIR}/codec/quant/quant_cpu_generic.cc
    ${QCOMM_LIB_DIR}/codec/quant/rowwise.cc)
  # The block quantizers' loops: vectorizable floor/nearbyint need -fno-trapping-math (values are
  # IEEE's either way).
  set_source_files_properties(${QCOMM_LIB_DIR}/codec/quant/quant_cpu_generic.cc
                              ${QCOMM_LIB_DIR}/codec/quant/percentile.cc PROPERTIES
    COMPILE_OPTIONS "-fno-trapping-math")
  # The codec kernels are built once per ISA and picked at run time (codec/qsgd_cpu_dispatch.cc).
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    target_sources(${target} PRIVATE ${QCOMM_LIB_DIR}/codec/qsgd_cpu_avx2.cc
                                     ${QCOMM_LIB_DIR}/codec/qsgd_cpu_avx512.cc
                                     ${QCOMM_LIB_DIR}/codec/quant/quant_cpu_avx2.cc
                                     ${QCOMM_LIB_DIR}/codec/quant/quant_cpu_avx512.cc)
    set_source_files_properties(${QCOMM_LIB_DIR}/codec/qsgd_cpu_avx2.cc PROPERTIES
      COMPILE_OPTIONS "-mavx2;-mbmi2")
    set_source_files_properties(${QCOMM_LIB_DIR}/codec/quant/quant_cpu_avx2.cc PROPERTIES
      COMPILE_OPTIONS "-mavx2;-mbmi2;-fno-trapping-math")
    set_source_files_properties(${QCOMM_LIB_DIR}/codec/qsgd_cpu_avx512.cc PROPERTIES
      COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mbmi2;-mprefer-vector-width=512;-Wno-maybe-uninitialized;-Wno-uninitialized")
    set_source_files_properties(${QCOMM_LIB_DIR}/codec/quant/quant_cpu_avx512.cc PROPERTIES
      COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mbmi2;-mprefer-vector-width=512;-fno-trapping-math;-Wno-maybe-uninitialized;-Wno-uninitialized")
    # (GCC 12 warns falsely inside its own AVX-512 intrinsic headers.)
    target_compile_definitions(${target} PRIVATE QCOMM_HAVE_X86_KERNELS=1)
  endif()
endfunction()

# The CUDA codec: kernels in .cu (no FMA contraction: the words are a function of IEEE arithmetic),
# launchers in plain C++.
function(qcomm_add_cuda_codec_sources target)
  target_sources(${target} PRIVATE ${QCOMM_LIB_DIR}/codec/cuda/qsgd_cuda.cc
                                   ${QCOMM_LIB_DIR}/codec/cuda/qsgd_kernels.cu
                                   ${QCOMM_LIB_DIR}/codec/cuda/quant_cuda.cc
                                   ${QCOMM_LIB_DIR}/codec/cuda/quant_kernels.cu)
  target_include_directories(${target} PRIVATE ${QCOMM_LIB_DIR})
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -ffp-contract=off>
    $<$<COMPILE_LANGUAGE:CUDA>:--fmad=false -Xcompiler=-ffp-contract=off>)
  # CMake 3.25 cannot name nvcc 13's C++20 dialect; the kernels need only C++17.
  set_target_properties(${target} PROPERTIES CUDA_STANDARD 17)
endfunction()
