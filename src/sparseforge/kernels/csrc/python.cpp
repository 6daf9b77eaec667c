// A Python module in the same library as the ops (its name is TORCH_EXTENSION_NAME, given by the build): entry
// points called straight from Python, without the dispatcher, for eager calls whose fixed costs matter.
//
//   linear_bm(x, values, bias, indptr, indices, group, n_in) -> y[batch, rows] or None
//        y = x[batch, n_in] W^T (+ bias) for SparseLinear's eager inference (grad mode off, or no operand that
//        requires grad); None when the operands do not fit (another dtype or device, rows of x not unit-stride,
//        a tensor subclass for x, ...): the caller then takes the general path, which raises the precise error.
//
// Measured at 512 -> 256, batch 128, 2% density, 1 thread, thread CPU time, with a 16 MB write between calls
// (code and data cold, as in a network or an interleaved benchmark): a torch.ops call costs ~45 us before any
// work (argument matching against the schema, the dispatcher, at::empty through the dispatcher); this entry
// unpacks the tensors and allocates the output directly.
// Without Python's headers (no python3-dev) this file compiles to nothing: the ops still build, and
// native.linear_bm stays None (the general path runs).
#if __has_include(<Python.h>)
#include <Python.h>
#include <ATen/PythonTorchFunctionTLS.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/csrc/autograd/python_variable.h>

namespace sparseforge {
at::Tensor linear_bm(const at::Tensor& x, const at::Tensor& values, const at::Tensor* bias, const at::Tensor& indptr,
                     const at::Tensor& indices, int64_t group, int64_t n_in);
}

namespace {

PyObject* linear_bm(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs) {
  HANDLE_TH_ERRORS
  if (nargs != 7) {
    PyErr_Format(PyExc_TypeError, "linear_bm takes 7 arguments (x, values, bias, indptr, indices, group, n_in), "
                 "got %zd", nargs);
    return nullptr;
  }
  // x a torch.Tensor or nn.Parameter, not another subclass (it may override torch functions); the others any tensors
  if (!THPVariable_CheckExact(args[0]) || !THPVariable_Check(args[1]) || !THPVariable_Check(args[3]) ||
      !THPVariable_Check(args[4]) || !(args[2] == Py_None || THPVariable_Check(args[2])) ||
      !PyLong_CheckExact(args[5]) || !PyLong_CheckExact(args[6]))
    Py_RETURN_NONE;
  // an active torch function or dispatch mode (a flop counter, fake tensors, ...) sees the general path's ops
  if (at::impl::torch_function_mode_enabled() || c10::impl::TorchDispatchModeTLS::any_modes_set()) Py_RETURN_NONE;
  const at::Tensor& x = THPVariable_Unpack(args[0]);
  const at::Tensor& values = THPVariable_Unpack(args[1]);
  const at::Tensor* bias = args[2] == Py_None ? nullptr : &THPVariable_Unpack(args[2]);
  if (c10::GradMode::is_enabled() && (x.requires_grad() || values.requires_grad() || (bias && bias->requires_grad())))
    Py_RETURN_NONE;  // autograd records this product: the general path
  const long long group = PyLong_AsLongLong(args[5]), n_in = PyLong_AsLongLong(args[6]);
  if (PyErr_Occurred()) return nullptr;
  at::Tensor y = sparseforge::linear_bm(x, values, bias, THPVariable_Unpack(args[3]), THPVariable_Unpack(args[4]),
                                        group, n_in);
  if (!y.defined()) Py_RETURN_NONE;
  return THPVariable_Wrap(std::move(y));
  END_HANDLE_TH_ERRORS
}

PyMethodDef methods[] = {
    {"linear_bm", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&linear_bm)), METH_FASTCALL,
     "linear_bm(x, values, bias, indptr, indices, group, n_in) -> y[batch, rows] or None (see python.cpp)"},
    {nullptr, nullptr, 0, nullptr}};

#define SPARSEFORGE_STR2(n) #n
#define SPARSEFORGE_STR(n) SPARSEFORGE_STR2(n)
PyModuleDef module_def = {PyModuleDef_HEAD_INIT, SPARSEFORGE_STR(TORCH_EXTENSION_NAME),
                          "sparseforge's direct entry points (csrc/python.cpp)", -1, methods};

}  // namespace

#define SPARSEFORGE_INIT2(n) PyInit_##n
#define SPARSEFORGE_INIT(n) SPARSEFORGE_INIT2(n)
PyMODINIT_FUNC SPARSEFORGE_INIT(TORCH_EXTENSION_NAME)() { return PyModule_Create(&module_def); }
#endif  // __has_include(<Python.h>)
