// qcomm's one engine for Python front ends: the C++ Communicator over the Gloo transport, joined
// through any store object with set/get/wait (torch.distributed's stores have them). Calls that
// touch the network run without the GIL; the store is called back with it.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <sstream>

#include "qcomm/communicator.h"
#include "qcomm/gloo_transport.h"

namespace py = pybind11;

namespace qcomm::python {
namespace {

// A Python store (set(key, bytes), get(key) -> bytes, wait(keys, timedelta)) as a KeyValueStore.
class PythonStore final : public transport::KeyValueStore {
 public:
  explicit PythonStore(py::object store) : store_(std::move(store)) {}
  ~PythonStore() override {
    py::gil_scoped_acquire gil;
    store_ = py::object();
  }

  Status set(const std::string& key, const std::vector<char>& value) override {
    py::gil_scoped_acquire gil;
    try {
      store_.attr("set")(key, py::bytes(value.data(), value.size()));
      return Status::ok();
    } catch (py::error_already_set& e) {
      return ioError("store: setting '", key, "': ", e.what());
    }
  }
  Result<std::vector<char>> get(const std::string& key,
                                std::chrono::milliseconds timeout) override {
    QCOMM_RETURN_IF_ERROR(wait({key}, timeout));
    py::gil_scoped_acquire gil;
    try {
      const std::string value = py::bytes(store_.attr("get")(key));
      return std::vector<char>(value.begin(), value.end());
    } catch (py::error_already_set& e) {
      return ioError("store: getting '", key, "': ", e.what());
    }
  }
  Status wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override {
    py::gil_scoped_acquire gil;
    try {
      const py::object timedelta = py::module_::import("datetime").attr("timedelta");
      store_.attr("wait")(keys, timedelta(py::arg("milliseconds") = timeout.count()));
      return Status::ok();
    } catch (py::error_already_set& e) {
      const std::string text = e.what();
      if (text.find("imeout") != std::string::npos || text.find("imed out") != std::string::npos) {
        return deadlineExceeded("store: waiting for ", keys.size(), " keys: ", text);
      }
      return ioError("store: waiting for ", keys.size(), " keys: ", text);
    }
  }

 private:
  py::object store_;
};

// ValueError for bad arguments, TimeoutError for a rank that did not answer in time,
// RuntimeError for the rest (a rank that died, a mismatched configuration).
[[noreturn]] void raiseRuntime(const Status& status) {
  if (status.code() == StatusCode::kInvalidArgument) throw py::value_error(status.message());
  if (status.code() == StatusCode::kDeadlineExceeded) {
    PyErr_SetString(PyExc_TimeoutError, status.message().c_str());
    throw py::error_already_set();
  }
  throw std::runtime_error(status.message());
}

// The transport and the Communicator on it, destroyed in that order's reverse.
struct Engine {
  std::unique_ptr<transport::GlooTransport> transport;
  std::unique_ptr<Communicator> comm;
};

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
      });

  py::class_<Engine>(m, "Engine")
      .def(py::init([](py::object store, int rank, int size, const std::string& codec,
                       const std::string& algorithm, bool errorFeedback, uint64_t seed,
                       int64_t minCompressNumel, double timeoutSeconds,
                       const std::string& hostname, const std::string& iface,
                       const std::string& prefix) {
             CommunicatorOptions options;
             options.codec = codec;
             Result<Algorithm> a = parseAlgorithm(algorithm);
             if (!a.isOk()) raiseRuntime(a.status());
             options.algorithm = *a;
             options.errorFeedback = errorFeedback;
             options.seed = seed;
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
             Status status;
             {
               py::gil_scoped_release release;  // the store's calls take it back
               Result<std::unique_ptr<transport::GlooTransport>> t =
                   transport::GlooTransport::create(kv, rank, size, gloo);
               if (t.isOk()) {
                 engine->transport = std::move(*t);
                 Result<std::unique_ptr<Communicator>> c =
                     Communicator::create(*engine->transport, options);
                 if (c.isOk()) {
                   engine->comm = std::move(*c);
                 } else {
                   status = c.status();
                 }
               } else {
                 status = t.status();
               }
             }
             if (!status.isOk()) raiseRuntime(status);
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
             if (n < 0) throw py::value_error("submit: " + std::to_string(n) + " values");
             if (address == 0 && n > 0) throw py::value_error("submit: a null address");
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
      .def("save_state",
           [](Engine& e) {
             std::ostringstream out;
             Status s;
             {
               py::gil_scoped_release release;
               s = e.comm->saveState(out);
             }
             if (!s.isOk()) raiseRuntime(s);
             return py::bytes(out.str());
           })
      .def("load_state",
           [](Engine& e, const py::bytes& state) {
             std::istringstream in{std::string(state)};
             Status s;
             {
               py::gil_scoped_release release;
               s = e.comm->loadState(in);
             }
             if (!s.isOk()) raiseRuntime(s);
           })
      .def_property_readonly("step", [](const Engine& e) { return e.comm->step(); })
      .def_property_readonly("bytes_sent",
                             [](const Engine& e) { return e.comm->stats().bytesSent; })
      .def_property_readonly("rank", [](const Engine& e) { return e.transport->rank(); })
      .def_property_readonly("size", [](const Engine& e) { return e.transport->size(); });
}

}  // namespace qcomm::python
