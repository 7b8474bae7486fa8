// Python bindings of plait's CPU kernels (one extension module; see kernels/__init__.py).
// Every kernel runs without the GIL (call_guard): a server's event loop thread then runs its
// Python while a decode step computes, instead of waiting for the engine thread to drop the GIL
// at the interpreter's switch interval (5 ms) and then holding the engine up in turn.
#include <torch/extension.h>

#include <vector>

torch::Tensor skinny_linear(const torch::Tensor& x, const torch::Tensor& w, const c10::optional<torch::Tensor>& bias);
std::vector<torch::Tensor> segment_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                             const c10::optional<torch::Tensor>& limits, double scale,
                                             const c10::optional<torch::Tensor>& out,
                                             const c10::optional<torch::Tensor>& lse);
torch::Tensor step_attention(const torch::Tensor& q, const torch::Tensor& k_new, const torch::Tensor& v_new,
                             const torch::Tensor& k_arena, const torch::Tensor& v_arena, const torch::Tensor& slots,
                             const torch::Tensor& key_cos, const torch::Tensor& key_sin, const torch::Tensor& reads,
                             const torch::Tensor& entry_rows, const torch::Tensor& entry_limits,
                             const torch::Tensor& entry_cos, const torch::Tensor& entry_sin, double scale);

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);
torch::Tensor silu_mul(const torch::Tensor& gu);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rms_norm", &rms_norm, py::call_guard<py::gil_scoped_release>(), "RMSNorm of each row (fused)", py::arg("x"), py::arg("weight"), py::arg("eps"));
  m.def("silu_mul", &silu_mul, py::call_guard<py::gil_scoped_release>(), "silu(gu[:, :I]) * gu[:, I:] (fused SwiGLU)", py::arg("gu"));
  m.def("skinny_linear", &skinny_linear, py::call_guard<py::gil_scoped_release>(), "y = x @ w.T (+ bias) for few rows", py::arg("x"), py::arg("w"),
        py::arg("bias") = py::none());
  m.def("segment_attention", &segment_attention, py::call_guard<py::gil_scoped_release>(), "attention of many rows over one segment, with lse",
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("limits") = py::none(), py::arg("scale"),
        py::arg("out") = py::none(), py::arg("lse") = py::none());
  m.def("step_attention", &step_attention, py::call_guard<py::gil_scoped_release>(), "one layer's attention of a decode step over shared segments",
        py::arg("q"), py::arg("k_new"), py::arg("v_new"), py::arg("k_arena"), py::arg("v_arena"), py::arg("slots"),
        py::arg("key_cos"), py::arg("key_sin"), py::arg("reads"), py::arg("entry_rows"), py::arg("entry_limits"),
        py::arg("entry_cos"), py::arg("entry_sin"), py::arg("scale"));
}
