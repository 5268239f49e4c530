//! Training state on disk: every parameter under its module path (burn's own layout, bit-exact
//! f32, so a resumed run continues bit-identically) and the optimiser moments under the same
//! paths. HF-format export is `deberta_io::save_model`'s job; this is the resume format.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, TensorSnapshot};
use deberta_io::{HostTensor, IoError, TensorMap};
use std::path::Path;

/// Every float parameter of `module` by its dotted module path.
pub fn module_tensors<B: Backend, M: Module<B>>(module: &M) -> TensorMap {
    module
        .collect(None, None, false)
        .into_iter()
        .map(|s| (s.full_path(), HostTensor::from_burn(s.to_data().expect("parameters are materialised"))))
        .collect()
}

/// Loads every parameter of `module` from `tensors` (read from `file`); anything missing,
/// unexpected or of the wrong shape is an error naming the file and the tensors.
pub fn load_module_tensors<B: Backend, M: Module<B>>(
    mut module: M,
    tensors: TensorMap,
    file: &Path,
) -> Result<M, IoError> {
    let snapshots = tensors
        .into_iter()
        .map(|(path, t)| {
            let parts = path.split('.').map(str::to_string).collect();
            TensorSnapshot::from_data(t.to_burn(), parts, Vec::new(), ParamId::new())
        })
        .collect();
    let result = module.apply(snapshots, None, None, false);
    let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    problems.extend(result.missing.iter().map(|(p, _)| format!("missing `{p}`")));
    problems.extend(result.unused.iter().map(|p| format!("unexpected `{p}`")));
    if !problems.is_empty() {
        return Err(IoError::Checkpoint {
            path: file.to_path_buf(),
            message: format!("does not match the model:\n  {}", problems.join("\n  ")),
        });
    }
    Ok(module)
}

/// (module path, parameter id) of every float parameter, in visiting order.
pub fn param_paths<B: Backend, M: Module<B>>(module: &M) -> Vec<(String, ParamId)> {
    struct Paths {
        stack: Vec<String>,
        out: Vec<(String, ParamId)>,
    }
    impl<B: Backend> ModuleVisitor<B> for Paths {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.out.push((self.stack.join("."), param.id));
        }
    }
    let mut visitor = Paths { stack: Vec::new(), out: Vec::new() };
    module.visit(&mut visitor);
    visitor.out
}
