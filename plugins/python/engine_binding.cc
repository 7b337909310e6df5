// qcomm's one engine for Python front ends: the C++ Communicator over the Gloo transport, joined
// through any store object with set/get/wait (torch.distributed's stores have them). Calls that
// touch the network run without the GIL; the store is called back with it.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "python_store.h"
#include "qcomm/communicator.h"
#include "qcomm/gloo_transport.h"

namespace py = pybind11;

namespace qcomm::python {
namespace {

using Engine = EngineOf<transport::GlooTransport, Communicator>;

}  // namespace

void defineEngine(py::module_& m) {
  py::class_<PendingAllreduce>(m, "PendingAllreduce")
      .def("wait", [](const PendingAllreduce& p) {
        Status s;
        {
          py::gil_scoped_release release;
          s = p.wait();
        }
        if (!s.isOk()) raiseRuntime(s);
      })
      // (submitted, started, finished) in seconds of time.monotonic()'s clock; call after wait().
      .def_property_readonly("times", [](const PendingAllreduce& p) {
        const PendingTimes t = p.times();
        const auto seconds = [](std::chrono::steady_clock::time_point at) {
          return std::chrono::duration<double>(at.time_since_epoch()).count();
        };
        return py::make_tuple(seconds(t.submitted), seconds(t.started), seconds(t.finished));
      });

  py::class_<Engine>(m, "Engine")
      .def(py::init([](py::object store, int rank, int size, const std::string& codec,
                       const std::string& algorithm, bool errorFeedback, uint64_t seed,
                       int64_t minCompressNumel, double timeoutSeconds,
                       const std::string& hostname, const std::string& iface,
                       const std::string& prefix) {
             CommunicatorOptions options =
                 engineOptions<CommunicatorOptions>(codec, algorithm, errorFeedback, seed);
             options.minCompressNumel = minCompressNumel;
             // The hook's timeout bounds the collectives too (not only Gloo's connect).
             options.timeout =
                 std::chrono::milliseconds(static_cast<int64_t>(timeoutSeconds * 1000));
             const Status valid = options.validate();
             if (!valid.isOk()) raiseRuntime(valid);
             transport::GlooOptions gloo;
             gloo.hostname = hostname;
             gloo.iface = iface;
             gloo.prefix = prefix;
             gloo.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeoutSeconds * 1000));
             auto kv = std::make_shared<PythonStore>(std::move(store));
             auto engine = std::make_unique<Engine>();
             connectEngine(
                 *engine, [&] { return transport::GlooTransport::create(kv, rank, size, gloo); },
                 [&](transport::GlooTransport& t) { return Communicator::create(t, options); });
             return engine;
           }),
           py::arg("store"), py::arg("rank"), py::arg("size"), py::arg("codec"),
           py::arg("algorithm") = "auto", py::arg("error_feedback") = false,
           py::arg("seed") = 0, py::arg("min_compress_numel") = 16384,
           py::arg("timeout") = 30.0, py::arg("hostname") = "", py::arg("iface") = "",
           py::arg("prefix") = "qcomm")
      // Starts the mean over ranks of n float32 values at `address`, in place, on the engine's
      // worker thread. The caller keeps the memory alive until the returned handle's wait().
      .def("submit",
           [](Engine& e, uintptr_t address, int64_t n, const std::string& key) {
             checkSubmitted(address, n);
             Result<PendingAllreduce> p{PendingAllreduce()};
             {
               py::gil_scoped_release release;
               p = e.comm->allreduceMeanAsync(
                   std::span<float>(reinterpret_cast<float*>(address), static_cast<size_t>(n)),
                   key);
             }
             if (!p.isOk()) raiseRuntime(p.status());
             return *p;
           },
           py::arg("address"), py::arg("n"), py::arg("key"))
      // One call for several tensors [(address, n, key), ...]: the engine fuses those under
      // min_compress_numel into one uncompressed allreduce and the others into one compressed
      // message. One handle for all of them.
      .def("submit_many",
           [](Engine& e, const std::vector<std::tuple<uintptr_t, int64_t, std::string>>& items) {
             std::vector<NamedTensor> tensors;
             for (const auto& [address, n, key] : items) {
               checkSubmitted(address, n);
               tensors.push_back(
                   {key, std::span<float>(reinterpret_cast<float*>(address), static_cast<size_t>(n))});
             }
             Result<PendingAllreduce> p{PendingAllreduce()};
             {
               py::gil_scoped_release release;
               p = e.comm->allreduceMeanAsync(std::move(tensors));
             }
             if (!p.isOk()) raiseRuntime(p.status());
             return *p;
           },
           py::arg("items"))
      .def("save_state",
           [](Engine& e) {
             return saveStateBytes([&](std::ostream& out) { return e.comm->saveState(out); });
           })
      .def("load_state",
           [](Engine& e, const py::bytes& state) {
             loadStateBytes(state, [&](std::istream& in) { return e.comm->loadState(in); });
           })
      .def_property_readonly("step", [](const Engine& e) { return e.comm->step(); })
      .def_property_readonly("bytes_sent",
                             [](const Engine& e) { return e.comm->stats().bytesSent; })
      .def_property_readonly("rank", [](const Engine& e) { return e.transport->rank(); })
      .def_property_readonly("size", [](const Engine& e) { return e.transport->size(); });
}

}  // namespace qcomm::python
