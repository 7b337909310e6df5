// Codes that Python holds without copies: the C++ EncodedTensor or QuantizedTensor moves to the
// heap under a named capsule, and the numpy arrays of its words and scales view its vectors with
// the capsule as their base. Decoding finds the tensor again through an array's base (no copy
// back in), and `out=` re-encodes into it when the geometry is the same (no allocation).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <vector>

namespace qcomm::python {

namespace py = pybind11;

template <typename Tensor>
struct HeldName;  // ::value: the capsule's name, one per tensor type

template <typename Tensor>
py::capsule hold(Tensor&& tensor, Tensor** held) {
  *held = new Tensor(std::move(tensor));
  return py::capsule(*held, HeldName<Tensor>::value, [](PyObject* capsule) {
    delete static_cast<Tensor*>(PyCapsule_GetPointer(capsule, HeldName<Tensor>::value));
  });
}

// A 1-d array over v, kept alive by owner (v must live as long as owner: a held tensor's vector).
template <typename T>
py::array_t<T> viewOf(std::vector<T>& v, const py::capsule& owner) {
  if (v.empty()) return py::array_t<T>(0);
  return py::array_t<T>({static_cast<py::ssize_t>(v.size())}, {static_cast<py::ssize_t>(sizeof(T))},
                        v.data(), owner);
}

// The tensor whose vector `array` views, or null (an array numpy or the caller made).
template <typename Tensor>
Tensor* heldBy(const py::array& array) {
  const py::object owner = array.base();
  PyObject* base = owner.ptr();
  if (base == nullptr || !PyCapsule_CheckExact(base)) return nullptr;
  const char* name = PyCapsule_GetName(base);
  if (name == nullptr || std::strcmp(name, HeldName<Tensor>::value) != 0) return nullptr;
  return static_cast<Tensor*>(PyCapsule_GetPointer(base, HeldName<Tensor>::value));
}

// The capsule behind a held array (for new views of a re-encoded tensor).
inline py::capsule ownerOf(const py::array& array) {
  return py::reinterpret_borrow<py::capsule>(array.base());
}

// `out` as a writable C-contiguous array of n values of T, or a ValueError naming what is wrong.
template <typename T>
T* outputBuffer(py::array& out, int64_t n, const char* what) {
  if (!py::isinstance<py::array_t<T>>(out) || !(out.flags() & py::array::c_style) ||
      !out.writeable()) {
    throw py::value_error(std::string(what) + ": out must be a writable C-contiguous " +
                          (sizeof(T) == 4 ? "float32" : "float64") + " array, got " +
                          py::str(out.dtype()).cast<std::string>());
  }
  if (out.size() != n) {
    throw py::value_error(std::string(what) + ": out holds " + std::to_string(out.size()) +
                          " values but the code has " + std::to_string(n));
  }
  return static_cast<T*>(out.mutable_data());
}

}  // namespace qcomm::python
