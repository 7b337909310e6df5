// `qcomm_allreduce_bench --device cuda`: the allreduce with device buffers (allreduce_bench_cuda.cc).
#pragma once

#include <cstdint>
#include <string>

// Runs the device benchmark on MPI_COMM_WORLD; returns the process exit code.
int runDeviceAllreduceBench(int64_t minBytes, int64_t maxBytes, double factor, int iters,
                            int warmup, const std::string& codec, int64_t chunk,
                            const std::string& transport);
