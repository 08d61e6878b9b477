// earn_export_cpp: the nanobind binding of libearn, used by earn_export.runtime.cpp_runtime
// (Recommender.load(dir, backend="cpp")). recommend() releases the GIL, so Python threads run it concurrently.
// libearn errors become the project's Python errors: EngineDirError, IdMapError, UnknownItemError (with its
// `unknown` dict), ValueError (bad arguments); others RuntimeError.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "earn/id_map.hpp"
#include "earn/recommender.hpp"

namespace nb = nanobind;

namespace {

template <typename T>
nb::ndarray<nb::numpy, T> to_numpy(std::vector<T>&& v, std::initializer_list<size_t> shape) {
  auto* heap = new std::vector<T>(std::move(v));
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(heap->data(), shape, owner);
}

nb::tuple result_tuple(earn::Result&& r) {
  const size_t u = static_cast<size_t>(r.users), k = static_cast<size_t>(r.top_k);
  return nb::make_tuple(to_numpy(std::move(r.items), {u, k}), to_numpy(std::move(r.scores), {u, k}),
                        to_numpy(std::move(r.skipped), {u}), to_numpy(std::move(r.truncated), {u}));
}

earn::OnUnknown on_unknown_of(const std::string& s) {
  if (s == "error") return earn::OnUnknown::kError;
  if (s == "skip") return earn::OnUnknown::kSkip;
  throw earn::InvalidArgument("on_unknown must be 'error' or 'skip', got '" + s + "'");
}

}  // namespace

NB_MODULE(earn_export_cpp, m) {
  m.doc() = "libearn (C++ runtime of earn-export) bound to Python";

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const earn::UnknownItemError& e) {
      nb::dict unknown;
      for (const auto& kv : e.unknown()) {
        nb::list ids;
        for (int64_t i : kv.second) ids.append(i);
        unknown[nb::int_(kv.first)] = ids;
      }
      nb::object cls = nb::module_::import_("earn_export.runtime.recommender").attr("UnknownItemError");
      nb::object exc = cls(unknown);
      PyErr_SetObject(cls.ptr(), exc.ptr());
    } catch (const earn::EngineDirError& e) {
      nb::object cls = nb::module_::import_("earn_export.engine.manifest").attr("EngineDirError");
      PyErr_SetString(cls.ptr(), e.what());
    } catch (const earn::IdMapError& e) {  // the engine's item_ids.json, checked by Recommender::load
      nb::object cls = nb::module_::import_("earn_export.data.id_map").attr("IdMapError");
      PyErr_SetString(cls.ptr(), e.what());
    } catch (const earn::InvalidArgument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const earn::RuntimeLibraryError& e) {
      PyErr_SetString(PyExc_ImportError, e.what());
    } catch (const earn::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  m.def("load_onnxruntime", &earn::load_onnxruntime, nb::arg("path") = "",
        "dlopen the libonnxruntime to run with (once per process); returns its path");
  m.def("available_providers", &earn::available_providers);

  nb::class_<earn::Recommender>(m, "Recommender")
      .def_static(
          "load",
          [](const std::string& dir, const std::vector<std::string>& providers,
             const std::vector<std::string>& custom_op_libraries, bool verify, int64_t batch_size,
             int intra_op_threads) {
            earn::Options o;
            o.providers = providers;
            o.custom_op_libraries = custom_op_libraries;
            o.verify = verify;
            o.batch_size = batch_size;
            o.intra_op_threads = intra_op_threads;
            nb::gil_scoped_release release;
            return earn::Recommender::load(dir, o);
          },
          nb::arg("engine_dir"), nb::arg("providers") = std::vector<std::string>{},
          nb::arg("custom_op_libraries") = std::vector<std::string>{}, nb::arg("verify") = true,
          nb::arg("batch_size") = 64, nb::arg("intra_op_threads") = 0)
      .def(
          "recommend",
          [](const earn::Recommender& r, const std::vector<std::vector<int64_t>>& histories, int64_t top_k,
             int64_t beam, const std::string& on_unknown) {
            const earn::OnUnknown mode = on_unknown_of(on_unknown);
            earn::Result res;
            {
              nb::gil_scoped_release release;
              res = r.recommend(histories, top_k, beam, mode);
            }
            return result_tuple(std::move(res));
          },
          nb::arg("histories"), nb::arg("top_k") = 20, nb::arg("beam") = 20, nb::arg("on_unknown") = "error",
          "(items [U, top_k] int64, scores [U, top_k] float32, skipped [U], truncated [U])")
      .def(
          "recommend_timed",
          [](const earn::Recommender& r, const std::vector<std::vector<int64_t>>& histories, int64_t top_k,
             int64_t beam, const std::string& on_unknown) {
            const earn::OnUnknown mode = on_unknown_of(on_unknown);
            earn::Result res;
            earn::Timings t;
            {
              nb::gil_scoped_release release;
              res = r.recommend(histories, top_k, beam, mode, &t);
            }
            nb::dict times;
            times["total_s"] = t.total_s;
            times["prefill_graph_s"] = t.prefill_graph_s;
            times["decode_graph_s"] = t.decode_graph_s;
            times["bookkeeping_s"] = t.bookkeeping_s();
            times["batches"] = t.batches;
            times["decode_calls"] = t.decode_calls;
            return nb::make_tuple(result_tuple(std::move(res)), times);
          },
          nb::arg("histories"), nb::arg("top_k") = 20, nb::arg("beam") = 20, nb::arg("on_unknown") = "error",
          "recommend() and where its time went: ((items, scores, skipped, truncated), timings dict)")
      .def_prop_ro("max_history", &earn::Recommender::max_history)
      .def_prop_ro("batch_size", &earn::Recommender::batch_size)
      .def_prop_ro("id_length", &earn::Recommender::id_length)
      .def_prop_ro("providers", &earn::Recommender::providers)
      .def_prop_ro("manifest_json", &earn::Recommender::manifest_json)
      .def("is_known", &earn::Recommender::is_known);
}
