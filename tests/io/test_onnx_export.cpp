// io::export_onnx: the file passes onnx::checker at opset 17 with a symbolic batch, the
// weights are initializers named by the state_dict, every bundled sample's model exports,
// and what cannot export (a layer without an ONNX form, a bad path) fails with a typed
// error and leaves no file behind. ONNX Runtime runs the files in tests/interop/.
#include "ember/python_free_api/io/onnx.h"

#include <gtest/gtest.h>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "ember/core/autograd.h"
#include "ember/layers/layers.h"
#include "ember/layers/onnx_graph.h"
#include "ember/layers/rnn.h"
#include "interop/export_models.h"

namespace ember {
namespace {

namespace fs = std::filesystem;

class OnnxExport : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("ember_onnx_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    return out;
  }

  fs::path dir_;
};

// Reads an ONNX file and runs onnx::checker on it (throws on failure).
onnx::ModelProto read_checked(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  onnx::ModelProto model;
  EXPECT_TRUE(model.ParseFromString(bytes)) << path;
  onnx::checker::check_model(model);
  return model;
}

std::map<std::string, const onnx::TensorProto*> initializers(const onnx::ModelProto& m) {
  std::map<std::string, const onnx::TensorProto*> out;
  for (const auto& t : m.graph().initializer()) out[t.name()] = &t;
  return out;
}

int64_t opset(const onnx::ModelProto& m) {
  for (const auto& o : m.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") return o.version();
  }
  return 0;
}

// A module with a forward and no ONNX form.
class Mystery : public nn::Module {
 public:
  Tensor forward(const Tensor& x) override { return x * x; }
};

TEST_F(OnnxExport, SequentialPassesCheckerAtOpset17WithSymbolicBatch) {
  nn::Sequential model{nn::Conv2d(1, 4, 3, {.padding = 1}),
                       nn::BatchNorm2d(4),
                       nn::ReLU(),
                       nn::MaxPool2d(2),
                       nn::Flatten(),
                       nn::Linear(4 * 4 * 4, 3),
                       nn::Softmax(1)};
  io::export_onnx(model, randn({2, 1, 8, 8}), path("m.onnx"));
  const onnx::ModelProto m = read_checked(path("m.onnx"));
  EXPECT_GE(opset(m), 17);
  ASSERT_EQ(m.graph().input_size(), 1);
  ASSERT_EQ(m.graph().output_size(), 1);
  EXPECT_EQ(m.graph().input(0).name(), "input");
  EXPECT_EQ(m.graph().output(0).name(), "output");
  const auto& in_shape = m.graph().input(0).type().tensor_type().shape();
  ASSERT_EQ(in_shape.dim_size(), 4);
  EXPECT_EQ(in_shape.dim(0).dim_param(), "batch");
  EXPECT_EQ(in_shape.dim(1).dim_value(), 1);
  EXPECT_EQ(m.graph().output(0).type().tensor_type().shape().dim(0).dim_param(), "batch");
}

TEST_F(OnnxExport, InitializersAreTheStateDictByName) {
  nn::Sequential model{nn::Conv2d(1, 4, 3), nn::BatchNorm2d(4), nn::Flatten(),
                       nn::Linear(4 * 6 * 6, 3), nn::LayerNorm({3})};
  io::export_onnx(model, randn({2, 1, 8, 8}), path("m.onnx"));
  const onnx::ModelProto m = read_checked(path("m.onnx"));
  const auto inits = initializers(m);
  for (const auto& [name, t] : model.state_dict()) {
    if (name.find("num_batches_tracked") != std::string::npos) continue;  // not used at inference
    ASSERT_TRUE(inits.count(name)) << name << " is not an initializer";
    const onnx::TensorProto& p = *inits.at(name);
    EXPECT_EQ(p.data_type(), onnx::TensorProto::FLOAT) << name;
    EXPECT_EQ(std::vector<int64_t>(p.dims().begin(), p.dims().end()), t.shape()) << name;
    const Tensor c = t.contiguous();
    ASSERT_EQ(p.raw_data().size(), c.nbytes()) << name;
    EXPECT_EQ(std::memcmp(p.raw_data().data(), c.data_ptr(), c.nbytes()), 0) << name;
  }
}

TEST_F(OnnxExport, ReshapesKeepTheBatchSymbolic) {
  // RowLstm reshapes to [x.size(0), 28, 28]: the file must say 0 (copy), not 3.
  samples::RowLstm model;
  io::export_onnx(model, randn({3, 1, 28, 28}), path("m.onnx"));
  const onnx::ModelProto m = read_checked(path("m.onnx"));
  const auto inits = initializers(m);
  int reshapes = 0;
  for (const auto& node : m.graph().node()) {
    if (node.op_type() != "Reshape") continue;
    ++reshapes;
    const onnx::TensorProto& shape = *inits.at(node.input(1));
    std::vector<int64_t> target(shape.raw_data().size() / sizeof(int64_t));
    std::memcpy(target.data(), shape.raw_data().data(), shape.raw_data().size());
    ASSERT_FALSE(target.empty());
    EXPECT_TRUE(target[0] == 0 || target[0] == -1) << node.name() << " bakes in " << target[0];
  }
  EXPECT_GT(reshapes, 0);
}

TEST_F(OnnxExport, EveryBundledSampleModelExports) {
  for (const interop::ExportCase& c : interop::export_cases()) {
    SCOPED_TRACE(c.name);
    const std::string file = path(c.name + ".onnx");
    io::export_onnx(*c.model, interop::random_input(c, 2, 1), file);
    const onnx::ModelProto m = read_checked(file);
    EXPECT_GE(opset(m), 17);
    EXPECT_EQ(m.graph().input(0).type().tensor_type().elem_type(),
              c.input_dtype == kInt64 ? onnx::TensorProto::INT64 : onnx::TensorProto::FLOAT);
  }
}

TEST_F(OnnxExport, RecurrentWeightsAreInOnnxGateOrder) {
  nn::LSTM lstm(2, 3);
  io::export_onnx(lstm, randn({4, 2, 2}), path("m.onnx"));
  const onnx::ModelProto m = read_checked(path("m.onnx"));
  const auto inits = initializers(m);
  ASSERT_TRUE(inits.count("onnx_W_l0"));
  const onnx::TensorProto& w = *inits.at("onnx_W_l0");
  EXPECT_EQ(std::vector<int64_t>(w.dims().begin(), w.dims().end()), (Shape{1, 12, 2}));
  // ONNX's blocks i, o, f, c are ember's rows 0-2, 9-11, 3-5, 6-8 (i, f, g, o).
  const std::vector<float> ember_w =
      lstm.named_parameters()[0].second.contiguous().to_vector<float>();
  std::vector<float> onnx_w(12 * 2);
  std::memcpy(onnx_w.data(), w.raw_data().data(), w.raw_data().size());
  const int from[4] = {0, 3, 1, 2};
  for (int block = 0; block < 4; ++block) {
    for (int i = 0; i < 3 * 2; ++i) {
      EXPECT_EQ(onnx_w[static_cast<size_t>(block * 6 + i)],
                ember_w[static_cast<size_t>(from[block] * 6 + i)]);
    }
  }
}

TEST_F(OnnxExport, LayerWithoutOnnxFormIsATypedErrorNamingIt) {
  nn::Sequential model{nn::Linear(3, 3), Mystery()};
  try {
    io::export_onnx(model, randn({2, 3}), path("m.onnx"));
    FAIL() << "expected OnnxExportError";
  } catch (const OnnxExportError& e) {
    EXPECT_NE(std::string(e.what()).find("no ONNX form for Mystery"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("'1'"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(files().empty());
}

TEST_F(OnnxExport, UnequalAdaptivePoolingBinsAreATypedError) {
  nn::Sequential model{nn::AdaptiveAvgPool2d(3)};
  EXPECT_THROW(io::export_onnx(model, randn({1, 1, 7, 7}), path("m.onnx")), OnnxExportError);
  nn::Sequential even{nn::AdaptiveAvgPool2d(3)};
  EXPECT_NO_THROW(io::export_onnx(even, randn({1, 1, 9, 9}), path("even.onnx")));
}

TEST_F(OnnxExport, EmitThatDisagreesWithForwardIsAnError) {
  class Liar : public nn::Module {
   public:
    Tensor forward(const Tensor& x) override { return x.flatten(1); }
    nn::OnnxValue emit_onnx(nn::OnnxGraph& g, const nn::OnnxValue& x) override { return g.relu(x); }
  };
  Liar model;
  EXPECT_THROW(io::export_onnx(model, randn({2, 3, 4}), path("m.onnx")), OnnxExportError);
}

TEST_F(OnnxExport, BadPathIsAnIOErrorAndNoTemporaryRemains) {
  nn::Sequential model{nn::Linear(3, 2)};
  EXPECT_THROW(io::export_onnx(model, randn({2, 3}), path("missing/dir/m.onnx")), IOError);
  EXPECT_THROW(io::export_onnx(model, randn({2, 3}), ""), IOError);
  io::export_onnx(model, randn({2, 3}), path("m.onnx"));
  io::export_onnx(model, randn({2, 3}), path("m.onnx"));  // replaced, atomically
  EXPECT_EQ(files(), std::vector<std::string>{"m.onnx"});
}

TEST_F(OnnxExport, RestoresTrainingModeAndRecordsNoGradient) {
  nn::Sequential model{nn::Linear(3, 2), nn::Dropout(0.5)};
  model.train();
  io::export_onnx(model, randn({2, 3}), path("m.onnx"));
  EXPECT_TRUE(model.is_training());
  for (const Tensor& p : model.parameters()) EXPECT_FALSE(p.grad().defined());
  // Dropout leaves no node behind.
  const onnx::ModelProto m = read_checked(path("m.onnx"));
  for (const auto& node : m.graph().node()) {
    EXPECT_NE(node.op_type(), "Dropout");
  }
}

}  // namespace
}  // namespace ember
