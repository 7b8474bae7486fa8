// Python bindings of plait's CPU kernels (one extension module; see kernels/__init__.py).
#include <torch/extension.h>

#include <vector>

torch::Tensor skinny_linear(const torch::Tensor& x, const torch::Tensor& w, const c10::optional<torch::Tensor>& bias);
std::vector<torch::Tensor> segment_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                             const c10::optional<torch::Tensor>& limits, double scale,
                                             const c10::optional<torch::Tensor>& out,
                                             const c10::optional<torch::Tensor>& lse);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("skinny_linear", &skinny_linear, "y = x @ w.T (+ bias) for few rows", py::arg("x"), py::arg("w"),
        py::arg("bias") = py::none());
  m.def("segment_attention", &segment_attention, "attention of many rows over one segment, with lse",
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("limits") = py::none(), py::arg("scale"),
        py::arg("out") = py::none(), py::arg("lse") = py::none());
}
