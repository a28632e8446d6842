// Checkpoints in the safetensors format (the one PyTorch and Hugging Face use): raw
// tensor files, model and optimizer state, and whole training checkpoints.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "ember/core/device.h"
#include "ember/core/base/export.h"
#include "ember/layers/module.h"
#include "ember/optim/grad_scaler.h"
#include "ember/optim/optimizer.h"

namespace ember::io {

// What load_safetensors returns: the tensors by name (sorted by name) and the
// "__metadata__" map (empty when the file has none).
struct SafetensorsFile {
  nn::StateDict tensors;
  std::map<std::string, std::string> metadata;
};

// Writes `tensors` (copied to the CPU and made contiguous; little-endian, C order) to
// `path`, entries sorted by name, the header padded with spaces so the data starts on an
// 8-byte boundary. The file is written beside `path` under a temporary name, synced and
// renamed over `path` (see Note [Atomic write] in safetensors.cpp): on any failure `path`
// is left as it was and the temporary is removed. Throws ember::IOError naming the path
// and the system's reason.
EMBER_API void save_safetensors(const std::string& path, const nn::StateDict& tensors,
                                const std::map<std::string, std::string>& metadata = {});

// Reads a safetensors file, checking the whole header against the file's size before any
// tensor data is read (docs/checkpoints.md lists every check), and places the tensors on
// `device`. Supports F32, F64, I32, I64, U8 and BOOL. Throws ember::IOError naming the file
// and what is wrong with it.
EMBER_API SafetensorsFile load_safetensors(const std::string& path,
                                           Device device = Device::cpu());

// A module's state_dict under its own names ("0.weight", "fc.bias"), so PyTorch's
// safetensors.torch.load_file returns the keys of the matching PyTorch state_dict.
EMBER_API void save(const nn::Module& module, const std::string& path);
// Loads into the module's registered tensors (converting to their device and dtype).
// Strict mode reports every missing, unexpected and mis-shaped key in one error.
EMBER_API void load(nn::Module& module, const std::string& path, bool strict = true);

// An optimizer's state_dict (per-parameter state, hyper-parameters, step count).
EMBER_API void save(const optim::Optimizer& optimizer, const std::string& path);
EMBER_API void load(optim::Optimizer& optimizer, const std::string& path);

// Where training stands, saved beside the weights so a run resumes where it stopped.
struct TrainingState {
  int64_t epoch = 0;
  int64_t step = 0;
  std::map<std::string, std::string> extra;  // anything else the caller wants kept
};

// One file holding the model ("model.<name>"), the optimizer if given
// ("optimizer.<name>"), the loss scaler of a float16 run if given ("grad_scaler.<name>"),
// the random generators' state, epoch, step and `state.extra`.
EMBER_API void save_checkpoint(const std::string& path, const nn::Module& module,
                               const optim::Optimizer* optimizer, const TrainingState& state,
                               const optim::GradScaler* scaler = nullptr);
// Restores everything save_checkpoint wrote, the random generators included, and returns
// the training state. Throws ember::IOError if the file is not an ember checkpoint, or if
// `optimizer` is given and the checkpoint was saved without one. All or nothing: every
// section is checked before anything changes, so after an error the module, the optimizer
// and the generators are as they were. `scaler`, when given, takes the checkpoint's scaler
// state (scale and growth tracker); it keeps its own when the checkpoint has none (saved
// from a run without float16), as a new scaler would start.
EMBER_API TrainingState load_checkpoint(const std::string& path, nn::Module& module,
                                        optim::Optimizer* optimizer,
                                        optim::GradScaler* scaler = nullptr);

}  // namespace ember::io
