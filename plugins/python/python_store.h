// What the Python engines share: a Python store (torch.distributed's, or any object with set,
// get and wait) as qcomm's KeyValueStore, and Status to Python exceptions.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "qcomm/communicator.h"  // Algorithm, parseAlgorithm
#include "qcomm/key_value_store.h"
#include "qcomm/status.h"

namespace qcomm::python {

namespace py = pybind11;

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
[[noreturn]] inline void raiseRuntime(const Status& status) {
  if (status.code() == StatusCode::kInvalidArgument) throw py::value_error(status.message());
  if (status.code() == StatusCode::kDeadlineExceeded) {
    PyErr_SetString(PyExc_TimeoutError, status.message().c_str());
    throw py::error_already_set();
  }
  throw std::runtime_error(status.message());
}

// The options both engines take from Python (CommunicatorOptions, GpuCommunicatorOptions).
template <typename Options>
Options engineOptions(const std::string& codec, const std::string& algorithm, bool errorFeedback,
                      uint64_t seed) {
  Options options;
  options.codec = codec;
  Result<Algorithm> a = parseAlgorithm(algorithm);
  if (!a.isOk()) raiseRuntime(a.status());
  options.algorithm = *a;
  options.errorFeedback = errorFeedback;
  options.seed = seed;
  return options;
}

// An engine: a transport and the communicator on it, destroyed in that order's reverse.
template <typename Transport, typename Comm>
struct EngineOf {
  std::unique_ptr<Transport> transport;
  std::unique_ptr<Comm> comm;
};

// Fills engine.transport from makeTransport() and engine.comm from makeComm(*engine.transport),
// without the GIL (a store's calls take it back); raises the first error.
template <typename Engine, typename MakeTransport, typename MakeComm>
void connectEngine(Engine& engine, MakeTransport makeTransport, MakeComm makeComm) {
  Status status;
  {
    py::gil_scoped_release release;
    auto t = makeTransport();
    if (t.isOk()) {
      engine.transport = std::move(*t);
      auto c = makeComm(*engine.transport);
      if (c.isOk()) {
        engine.comm = std::move(*c);
      } else {
        status = c.status();
      }
    } else {
      status = t.status();
    }
  }
  if (!status.isOk()) raiseRuntime(status);
}

// The arguments of an engine's submit: n values at a raw address.
inline void checkSubmitted(uintptr_t address, int64_t n) {
  if (n < 0) throw py::value_error("submit: " + std::to_string(n) + " values");
  if (address == 0 && n > 0) throw py::value_error("submit: a null address");
}

// An engine's checkpoint as Python bytes: save(std::ostream&) and load(std::istream&) run
// without the GIL; an error is raised as RuntimeError.
template <typename Save>
py::bytes saveStateBytes(Save save) {
  std::ostringstream out;
  Status s;
  {
    py::gil_scoped_release release;
    s = save(out);
  }
  if (!s.isOk()) raiseRuntime(s);
  return py::bytes(out.str());
}

template <typename Load>
void loadStateBytes(const py::bytes& state, Load load) {
  std::istringstream in{std::string(state)};
  Status s;
  {
    py::gil_scoped_release release;
    s = load(in);
  }
  if (!s.isOk()) raiseRuntime(s);
}

}  // namespace qcomm::python
