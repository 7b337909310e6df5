// qcomm's GPU engine for Python front ends: the GpuCommunicator over the NCCL transport, whose
// unique id travels through the same kind of store as the CPU engine's rendezvous (rank 0 sets
// it, the others wait for it). A submitted bucket is averaged in place on its device, ordered on
// the caller's CUDA stream: the call enqueues and returns; the host is not blocked (the pipeline
// has no host synchronization). Built when qcomm has CUDA, NCCL and Gloo (the store adapter).
#include <cuda_runtime_api.h>
#include <pybind11/pybind11.h>

#include "python_store.h"
#include "qcomm/gpu_communicator.h"
#include "qcomm/nccl_store.h"

namespace py = pybind11;

namespace qcomm::python {
namespace {

using GpuEngine = EngineOf<transport::NcclTransport, GpuCommunicator>;

// Options as the hook gives them, checked before the store or a GPU is touched.
GpuCommunicatorOptions gpuOptions(const std::string& codec, const std::string& algorithm,
                                  bool errorFeedback, uint64_t seed) {
  GpuCommunicatorOptions options =
      engineOptions<GpuCommunicatorOptions>(codec, algorithm, errorFeedback, seed);
  options.minCompressNumel = 0;  // the hook sends small buckets through the process group
  const Status valid = options.validate();
  if (!valid.isOk()) raiseRuntime(valid);
  return options;
}

}  // namespace

void defineGpuEngine(py::module_& m) {
  m.def(
      "check_gpu_engine_options",
      [](const std::string& codec, const std::string& algorithm, bool errorFeedback,
         uint64_t seed) { gpuOptions(codec, algorithm, errorFeedback, seed); },
      py::arg("codec"), py::arg("algorithm"), py::arg("error_feedback") = false,
      py::arg("seed") = 0,
      "Raises ValueError where GpuEngine would refuse these options (no GPU needed).");
  py::class_<GpuEngine>(m, "GpuEngine")
      .def(py::init([](py::object store, int rank, int size, int device, const std::string& codec,
                       const std::string& algorithm, bool errorFeedback, uint64_t seed,
                       double timeoutSeconds, const std::string& prefix) {
             const GpuCommunicatorOptions options =
                 gpuOptions(codec, algorithm, errorFeedback, seed);
             transport::NcclOptions nccl;
             nccl.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeoutSeconds * 1000));
             PythonStore kv(std::move(store));
             auto engine = std::make_unique<GpuEngine>();
             connectEngine(
                 *engine,
                 [&] { return transport::createNcclOverStore(kv, rank, size, device, nccl, prefix); },
                 [&](transport::NcclTransport& t) { return GpuCommunicator::create(t, options); });
             return engine;
           }),
           py::arg("store"), py::arg("rank"), py::arg("size"), py::arg("device"),
           py::arg("codec"), py::arg("algorithm") = "allgather",
           py::arg("error_feedback") = false, py::arg("seed") = 0, py::arg("timeout") = 300.0,
           py::arg("prefix") = "qcomm-gpu")
      // Enqueues the mean over ranks of n float32 values at device address `address`, in place,
      // on CUDA stream `stream` (a cudaStream_t as an integer: torch's stream.cuda_stream).
      .def(
          "submit",
          [](GpuEngine& e, uintptr_t address, int64_t n, const std::string& key,
             uintptr_t stream) {
            checkSubmitted(address, n);
            Status s;
            {
              py::gil_scoped_release release;
              s = e.comm->allreduceMean(reinterpret_cast<float*>(address), n, key,
                                        reinterpret_cast<cudaStream_t>(stream));
            }
            if (!s.isOk()) raiseRuntime(s);
          },
          py::arg("address"), py::arg("n"), py::arg("key"), py::arg("stream"))
      // Waits for `stream` through the transport: NCCL's asynchronous errors and timeouts.
      .def(
          "synchronize",
          [](GpuEngine& e, uintptr_t stream) {
            Status s;
            {
              py::gil_scoped_release release;
              s = e.comm->synchronize(reinterpret_cast<cudaStream_t>(stream));
            }
            if (!s.isOk()) raiseRuntime(s);
          },
          py::arg("stream"))
      // The error-feedback residuals (downloaded from the device) and the step, after the work
      // queued on `stream`; the same archive layout as Engine.save_state.
      .def(
          "save_state",
          [](GpuEngine& e, uintptr_t stream) {
            return saveStateBytes([&](std::ostream& out) {
              return e.comm->saveState(out, reinterpret_cast<cudaStream_t>(stream));
            });
          },
          py::arg("stream"))
      .def(
          "load_state",
          [](GpuEngine& e, const py::bytes& state, uintptr_t stream) {
            loadStateBytes(state, [&](std::istream& in) {
              return e.comm->loadState(in, reinterpret_cast<cudaStream_t>(stream));
            });
          },
          py::arg("state"), py::arg("stream"))
      .def_property_readonly("bytes_sent", [](const GpuEngine& e) { return e.comm->bytesSent(); })
      .def_property_readonly("rank", [](const GpuEngine& e) { return e.transport->rank(); })
      .def_property_readonly("size", [](const GpuEngine& e) { return e.transport->size(); });
}

}  // namespace qcomm::python
