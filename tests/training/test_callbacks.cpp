// Keras-style callbacks driven by a tiny fit: EarlyStopping's patience counting, modes and
// restored weights, ModelCheckpoint's path templates and save_best_only, CSVLogger's
// columns and append mode, LearningRateScheduler, and TensorBoard event files parsed back
// record by record (CRC-32C and the protobuf fields checked).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <ember/ember.h>

using namespace ember;
namespace fs = std::filesystem;

namespace {

data::TensorDataset separable(int64_t n, uint32_t seed = 1) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n * 2);
  std::vector<int64_t> y(n);
  for (int64_t i = 0; i < n; ++i) {
    x[2 * i] = normal(gen);
    x[2 * i + 1] = normal(gen);
    y[i] = x[2 * i] - x[2 * i + 1] > 0.0f ? 1 : 0;
  }
  return data::TensorDataset(Tensor::from_vector<float>(x, {n, 2}), Tensor::from_vector<int64_t>(y, {n}));
}

std::vector<std::vector<float>> weights_of(const nn::Module& m) {
  std::vector<std::vector<float>> out;
  for (const auto& [name, t] : m.state_dict()) out.push_back(t.cpu().contiguous().to_vector<float>());
  return out;
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / ("ember_callbacks_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Overwrites (or adds) one value in the epoch's logs from a script, so the callbacks
// after it see exactly the values a test chooses.
class Script : public callbacks::Callback {
 public:
  Script(std::string key, std::vector<double> values) : key_(std::move(key)), values_(std::move(values)) {}
  void on_epoch_end(Trainer&, int64_t epoch, Logs& logs) override {
    const double v = values_.at(static_cast<size_t>(epoch));
    for (auto& [name, x] : logs) {
      if (name == key_) {
        x = v;
        return;
      }
    }
    logs.emplace_back(key_, v);
  }

 private:
  std::string key_;
  std::vector<double> values_;
};

class WeightRecorder : public callbacks::Callback {
 public:
  void on_epoch_end(Trainer& trainer, int64_t, Logs&) override { epochs.push_back(weights_of(trainer.model())); }
  std::vector<std::vector<std::vector<float>>> epochs;
};

// A small model, optimizer and trainer over a 32-point problem with validation data.
struct Rig {
  data::TensorDataset train = separable(32, 1);
  data::TensorDataset val = separable(16, 2);
  nn::Sequential model{nn::Linear(2, 4), nn::ReLU(), nn::Linear(4, 2)};
  optim::SGD opt{model.parameters(), {.lr = 0.05}};
  Trainer trainer{model, opt, loss::CrossEntropy(), {metrics::Accuracy()}, Device::cpu()};

  History fit(int64_t epochs, std::vector<std::shared_ptr<callbacks::Callback>> cbs) {
    return trainer.fit(train, {.epochs = epochs, .batch_size = 8, .validation = &val,
                               .callbacks = std::move(cbs), .verbose = 0});
  }
};

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream is(line);
  while (std::getline(is, cell, sep)) out.push_back(cell);
  return out;
}

}  // namespace

// --- EarlyStopping ---------------------------------------------------------------------------

TEST(EarlyStopping, PatienceZeroStopsAtTheFirstEpochWithoutImprovement) {
  Rig s;
  auto stop = std::make_shared<callbacks::EarlyStopping>();  // val_loss, patience 0
  History h = s.fit(10, {std::make_shared<Script>("val_loss", std::vector<double>{1.0, 0.9, 0.95, 0.8, 0.7, 0.6,
                                                                                  0.5, 0.4, 0.3, 0.2}),
                         stop});
  EXPECT_EQ(h.epochs(), 3u);
  EXPECT_EQ(stop->stopped_epoch(), 2);
  EXPECT_EQ(stop->best_epoch(), 1);
}

TEST(EarlyStopping, PatienceTwoCountsEpochsWithoutImprovementAndResetsOnImprovement) {
  {
    Rig s;
    auto stop = std::make_shared<callbacks::EarlyStopping>(callbacks::EarlyStoppingOptions{.patience = 2});
    History h = s.fit(8, {std::make_shared<Script>("val_loss", std::vector<double>{1.0, 0.9, 0.95, 0.93, 0.5, 0.4,
                                                                                   0.3, 0.2}),
                          stop});
    EXPECT_EQ(h.epochs(), 4u);  // epochs 2 and 3 without improvement
    EXPECT_EQ(stop->stopped_epoch(), 3);
  }
  {
    Rig s;
    auto stop = std::make_shared<callbacks::EarlyStopping>(callbacks::EarlyStoppingOptions{.patience = 2});
    History h = s.fit(8, {std::make_shared<Script>("val_loss", std::vector<double>{1.0, 1.1, 0.5, 0.6, 0.7, 0.1,
                                                                                   0.1, 0.1}),
                          stop});
    EXPECT_EQ(h.epochs(), 5u);  // epoch 1 waits, 2 improves, 3 and 4 wait
    EXPECT_EQ(stop->stopped_epoch(), 4);
    EXPECT_EQ(stop->best_epoch(), 2);
  }
  {
    Rig s;  // never stalls for two epochs: runs to the end
    auto stop = std::make_shared<callbacks::EarlyStopping>(callbacks::EarlyStoppingOptions{.patience = 2});
    History h = s.fit(5, {std::make_shared<Script>("val_loss", std::vector<double>{1.0, 1.1, 0.9, 0.95, 0.8}),
                          stop});
    EXPECT_EQ(h.epochs(), 5u);
    EXPECT_EQ(stop->stopped_epoch(), -1);
  }
}

TEST(EarlyStopping, MinDeltaSetsTheImprovementThatCounts) {
  const std::vector<double> slow = {1.0, 0.95, 0.9, 0.85, 0.8};
  {
    Rig s;
    auto stop = std::make_shared<callbacks::EarlyStopping>(
        callbacks::EarlyStoppingOptions{.min_delta = 0.1, .patience = 1});
    History h = s.fit(5, {std::make_shared<Script>("val_loss", slow), stop});
    EXPECT_EQ(h.epochs(), 2u);  // 0.95 is not 0.1 below 1.0
  }
  {
    Rig s;
    auto stop = std::make_shared<callbacks::EarlyStopping>(
        callbacks::EarlyStoppingOptions{.min_delta = 0.01, .patience = 1});
    History h = s.fit(5, {std::make_shared<Script>("val_loss", slow), stop});
    EXPECT_EQ(h.epochs(), 5u);
  }
}

TEST(EarlyStopping, AutoModeMaximisesAccuracy) {
  Rig s;
  auto stop = std::make_shared<callbacks::EarlyStopping>(callbacks::EarlyStoppingOptions{.monitor = "val_accuracy"});
  History h = s.fit(6, {std::make_shared<Script>("val_accuracy", std::vector<double>{0.5, 0.6, 0.7, 0.65, 0.9, 0.95}),
                        stop});
  EXPECT_EQ(h.epochs(), 4u);  // a falling accuracy is no improvement
  EXPECT_EQ(stop->best_epoch(), 2);

  Rig t;  // the same values under mode Min stop at the first rise
  auto min_stop = std::make_shared<callbacks::EarlyStopping>(
      callbacks::EarlyStoppingOptions{.monitor = "val_accuracy", .mode = callbacks::Mode::Min});
  History g = t.fit(6, {std::make_shared<Script>("val_accuracy", std::vector<double>{0.5, 0.6, 0.7, 0.65, 0.9, 0.95}),
                        min_stop});
  EXPECT_EQ(g.epochs(), 2u);
}

TEST(EarlyStopping, RestoreBestWeightsPutsBackTheBestEpochsValues) {
  Rig s;
  auto recorder = std::make_shared<WeightRecorder>();
  auto stop = std::make_shared<callbacks::EarlyStopping>(
      callbacks::EarlyStoppingOptions{.patience = 2, .restore_best_weights = true});
  History h = s.fit(10, {std::make_shared<Script>("val_loss", std::vector<double>{1.0, 0.5, 0.7, 0.9, 0.1, 0.1,
                                                                                  0.1, 0.1, 0.1, 0.1}),
                         recorder, stop});
  ASSERT_EQ(h.epochs(), 4u);
  EXPECT_EQ(stop->best_epoch(), 1);
  EXPECT_EQ(weights_of(s.model), recorder->epochs[1]);
  EXPECT_NE(weights_of(s.model), recorder->epochs[3]);
}

TEST(EarlyStopping, UnknownMonitorListsTheAvailableValues) {
  Rig s;
  auto stop = std::make_shared<callbacks::EarlyStopping>(callbacks::EarlyStoppingOptions{.monitor = "val_acc"});
  try {
    s.fit(2, {stop});
    FAIL() << "an unknown monitor must throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("EarlyStopping"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'val_acc'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("loss, accuracy, val_loss, val_accuracy"), std::string::npos) << msg;
  }
}

// --- ModelCheckpoint ------------------------------------------------------------------------

TEST(ModelCheckpoint, FormatsPathTemplatesLikePython) {
  callbacks::ModelCheckpoint ckpt("ckpt-{epoch:02d}-{val_loss:.2f}.safetensors");
  EXPECT_EQ(ckpt.format_path(2, {{"loss", 0.5}, {"val_loss", 0.12345}}), "ckpt-03-0.12.safetensors");
  EXPECT_EQ(ckpt.format_path(11, {{"val_loss", 1.0}}), "ckpt-12-1.00.safetensors");
  EXPECT_EQ(callbacks::ModelCheckpoint("w{epoch}.st").format_path(0, {}), "w1.st");
  EXPECT_EQ(callbacks::ModelCheckpoint("{epoch:03d}_{accuracy:.1%}").format_path(4, {{"accuracy", 0.875}}),
            "005_87.5%");
  EXPECT_EQ(callbacks::ModelCheckpoint("{val_loss:.3e}").format_path(0, {{"val_loss", 0.00012346}}),
            "1.235e-04");
}

TEST(ModelCheckpoint, BadTemplatesAreRefusedByName) {
  EXPECT_THROW(callbacks::ModelCheckpoint("ckpt-{epoch").format_path(0, {}), Error);
  EXPECT_THROW(callbacks::ModelCheckpoint("ckpt-{epoch:s}").format_path(0, {}), Error);
  EXPECT_THROW(callbacks::ModelCheckpoint("ckpt-{loss:n%n}").format_path(0, {{"loss", 1.0}}), Error);
  try {
    callbacks::ModelCheckpoint("ckpt-{val_los:.2f}").format_path(0, {{"val_loss", 1.0}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("val_los"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("available: val_loss"), std::string::npos) << e.what();
  }
}

TEST(ModelCheckpoint, SaveBestOnlyWritesOnlyOnImprovement) {
  TempDir dir("best_only");
  Rig s;
  auto ckpt = std::make_shared<callbacks::ModelCheckpoint>(
      (dir.path / "ckpt-{epoch:02d}-{val_loss:.2f}.safetensors").string(),
      callbacks::ModelCheckpointOptions{.save_best_only = true});
  s.fit(5, {std::make_shared<Script>("val_loss", std::vector<double>{1.0, 0.8, 0.9, 0.7, 0.75}), ckpt});
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(dir.path)) files.insert(e.path().filename().string());
  EXPECT_EQ(files, (std::set<std::string>{"ckpt-01-1.00.safetensors", "ckpt-02-0.80.safetensors",
                                          "ckpt-04-0.70.safetensors"}));
  EXPECT_EQ(ckpt->last_saved(), (dir.path / "ckpt-04-0.70.safetensors").string());
}

TEST(ModelCheckpoint, NanNeverCountsAsTheBest) {
  TempDir dir("nan_best");
  Rig s;
  auto ckpt = std::make_shared<callbacks::ModelCheckpoint>(
      (dir.path / "ckpt-{epoch:02d}.safetensors").string(), callbacks::ModelCheckpointOptions{.save_best_only = true});
  s.fit(3, {std::make_shared<Script>("val_loss", std::vector<double>{NAN, 0.9, 0.8}), ckpt});
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(dir.path)) files.insert(e.path().filename().string());
  EXPECT_EQ(files, (std::set<std::string>{"ckpt-02.safetensors", "ckpt-03.safetensors"}));
}

TEST(ModelCheckpoint, SavedWeightsLoadBackIntoTheModel) {
  TempDir dir("load_back");
  Rig s;
  auto recorder = std::make_shared<WeightRecorder>();
  auto ckpt = std::make_shared<callbacks::ModelCheckpoint>((dir.path / "model-{epoch}.safetensors").string());
  s.fit(3, {recorder, ckpt});
  ASSERT_TRUE(fs::exists(dir.path / "model-2.safetensors"));

  nn::Sequential fresh{nn::Linear(2, 4), nn::ReLU(), nn::Linear(4, 2)};
  io::load(fresh, (dir.path / "model-2.safetensors").string());
  EXPECT_EQ(weights_of(fresh), recorder->epochs[1]);
  io::load(fresh, ckpt->last_saved());
  EXPECT_EQ(weights_of(fresh), weights_of(s.model));
}

TEST(ModelCheckpoint, CreatesMissingDirectories) {
  TempDir dir("nested");
  Rig s;
  auto ckpt = std::make_shared<callbacks::ModelCheckpoint>((dir.path / "runs/a/w-{epoch}.safetensors").string());
  s.fit(1, {ckpt});
  EXPECT_TRUE(fs::exists(dir.path / "runs/a/w-1.safetensors"));
}

// --- CSVLogger ---------------------------------------------------------------------------------

TEST(CSVLogger, WritesEpochThenSortedNamesOneRowPerEpoch) {
  TempDir dir("csv");
  const fs::path path = dir.path / "log.csv";
  Rig s;
  History h = s.fit(3, {std::make_shared<callbacks::CSVLogger>(path.string())});
  const auto lines = split_lines(read_text(path));
  ASSERT_EQ(lines.size(), 4u) << read_text(path);
  EXPECT_EQ(lines[0], "epoch,accuracy,loss,val_accuracy,val_loss");
  for (int e = 0; e < 3; ++e) {
    const auto cells = split(lines[e + 1], ',');
    ASSERT_EQ(cells.size(), 5u) << lines[e + 1];
    EXPECT_EQ(cells[0], std::to_string(e));  // Keras's 0-based epoch
    EXPECT_EQ(std::stod(cells[1]), h["accuracy"][e]);
    EXPECT_EQ(std::stod(cells[2]), h["loss"][e]);
    EXPECT_EQ(std::stod(cells[3]), h["val_accuracy"][e]);
    EXPECT_EQ(std::stod(cells[4]), h["val_loss"][e]);
  }
  // Values are written in the fewest digits that read back exactly: an accuracy of k/32
  // needs at most five decimals ("0.03125"), not seventeen.
  for (int e = 0; e < 3; ++e) EXPECT_LE(split(lines[e + 1], ',')[1].size(), 7u) << lines[e + 1];
}

TEST(CSVLogger, AppendModeDoesNotRepeatTheHeader) {
  TempDir dir("csv_append");
  const fs::path path = dir.path / "log.csv";
  {
    Rig s;
    s.fit(2, {std::make_shared<callbacks::CSVLogger>(path.string())});
  }
  {
    Rig s;
    s.fit(3, {std::make_shared<callbacks::CSVLogger>(path.string(), /*append=*/true)});
  }
  const auto lines = split_lines(read_text(path));
  ASSERT_EQ(lines.size(), 6u) << read_text(path);
  int headers = 0;
  for (const auto& l : lines) headers += l.rfind("epoch,", 0) == 0 ? 1 : 0;
  EXPECT_EQ(headers, 1);
  EXPECT_EQ(split(lines[5], ',')[0], "2");

  // Without append the file starts again.
  Rig s;
  s.fit(1, {std::make_shared<callbacks::CSVLogger>(path.string(), false, ';')});
  const auto again = split_lines(read_text(path));
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0], "epoch;accuracy;loss;val_accuracy;val_loss");
}

// --- LearningRateScheduler -------------------------------------------------------------------------

TEST(LearningRateScheduler, StepsAnLRScheduleAndLogsTheEpochsLr) {
  Rig s;  // SGD lr 0.05
  auto sched = std::make_shared<optim::StepLR>(s.opt, 1, 0.5);
  History h = s.fit(3, {std::make_shared<callbacks::LearningRateScheduler>(sched)});
  ASSERT_TRUE(h.contains("lr"));
  EXPECT_DOUBLE_EQ(h["lr"][0], 0.05);
  EXPECT_DOUBLE_EQ(h["lr"][1], 0.025);
  EXPECT_DOUBLE_EQ(h["lr"][2], 0.0125);
  EXPECT_DOUBLE_EQ(s.opt.lr(), 0.00625);
}

TEST(LearningRateScheduler, LambdaSetsTheLrBeforeEachEpoch) {
  Rig s;
  std::vector<int64_t> epochs_seen;
  auto cb = std::make_shared<callbacks::LearningRateScheduler>([&](int64_t epoch, double lr) {
    epochs_seen.push_back(epoch);
    return epoch < 1 ? lr : lr * 0.1;
  });
  History h = s.fit(3, {cb});
  EXPECT_EQ(epochs_seen, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_DOUBLE_EQ(h["lr"][0], 0.05);
  EXPECT_NEAR(h["lr"][1], 0.005, 1e-15);
  EXPECT_NEAR(h["lr"][2], 0.0005, 1e-15);
  EXPECT_NEAR(s.opt.lr(), 0.0005, 1e-15);
}

TEST(LearningRateScheduler, ALaterFirstEpochStartsTheScheduleThere) {
  Rig s;
  auto sched = std::make_shared<optim::StepLR>(s.opt, 1, 0.5);
  History h = s.trainer.fit(s.train, {.epochs = 4, .batch_size = 8, .callbacks = {std::make_shared<callbacks::LearningRateScheduler>(sched)},
                                      .verbose = 0, .initial_epoch = 2});
  ASSERT_EQ(h["lr"].size(), 2u);
  EXPECT_DOUBLE_EQ(h["lr"][0], 0.0125);  // epoch 2's lr
  EXPECT_DOUBLE_EQ(h["lr"][1], 0.00625);
}

// --- TensorBoard -----------------------------------------------------------------------------------

namespace {

uint32_t masked(const void* data, size_t n) { return masked_crc32c(data, n); }

uint64_t read_varint(const std::string& s, size_t* pos) {
  uint64_t v = 0;
  for (int shift = 0; *pos < s.size(); shift += 7) {
    const auto b = static_cast<uint8_t>(s[(*pos)++]);
    v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) return v;
  }
  ADD_FAILURE() << "truncated varint";
  return v;
}

// The fields of an Event ember writes, decoded from the protobuf wire format.
struct Event {
  double wall_time = 0;
  int64_t step = -1;
  std::string file_version;
  std::vector<std::pair<std::string, float>> scalars;  // summary values
};

// Calls fn(field, wire_type, payload) for each field of a message; varints and fixed
// fields come as their raw bytes' value in `number`.
template <typename Fn>
void for_each_field(const std::string& msg, Fn fn) {
  size_t pos = 0;
  while (pos < msg.size()) {
    const uint64_t key = read_varint(msg, &pos);
    const int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
    std::string bytes;
    uint64_t number = 0;
    if (wire == 0) {
      number = read_varint(msg, &pos);
    } else if (wire == 1 || wire == 5) {
      const size_t n = wire == 1 ? 8 : 4;
      bytes = msg.substr(pos, n);
      pos += n;
    } else if (wire == 2) {
      const uint64_t n = read_varint(msg, &pos);
      bytes = msg.substr(pos, n);
      pos += n;
    } else {
      ADD_FAILURE() << "unexpected wire type " << wire;
      return;
    }
    fn(field, wire, number, bytes);
  }
}

Event parse_event(const std::string& data) {
  Event ev;
  for_each_field(data, [&](int field, int wire, uint64_t number, const std::string& bytes) {
    if (field == 1 && wire == 1) std::memcpy(&ev.wall_time, bytes.data(), 8);
    if (field == 2 && wire == 0) ev.step = static_cast<int64_t>(number);
    if (field == 3 && wire == 2) ev.file_version = bytes;
    if (field == 5 && wire == 2) {
      for_each_field(bytes, [&](int f, int w, uint64_t, const std::string& value) {
        if (f != 1 || w != 2) return;
        std::string tag;
        float v = NAN;
        for_each_field(value, [&](int vf, int vw, uint64_t, const std::string& b) {
          if (vf == 1 && vw == 2) tag = b;
          if (vf == 2 && vw == 5) std::memcpy(&v, b.data(), 4);
        });
        ev.scalars.emplace_back(tag, v);
      });
    }
  });
  return ev;
}

// Every record of an event file, each checked for its length and both masked CRCs.
std::vector<Event> read_events(const fs::path& path) {
  const std::string file = read_text(path);
  std::vector<Event> events;
  size_t pos = 0;
  while (pos < file.size()) {
    EXPECT_LE(pos + 12, file.size()) << "truncated record header";
    if (pos + 12 > file.size()) break;
    uint64_t len = 0;
    uint32_t len_crc = 0, data_crc = 0;
    std::memcpy(&len, file.data() + pos, 8);
    std::memcpy(&len_crc, file.data() + pos + 8, 4);
    EXPECT_EQ(len_crc, masked(file.data() + pos, 8)) << "length CRC at " << pos;
    EXPECT_LE(pos + 12 + len + 4, file.size()) << "truncated record";
    if (pos + 12 + len + 4 > file.size()) break;
    const std::string data = file.substr(pos + 12, len);
    std::memcpy(&data_crc, file.data() + pos + 12 + len, 4);
    EXPECT_EQ(data_crc, masked(data.data(), data.size())) << "data CRC at " << pos;
    events.push_back(parse_event(data));
    pos += 12 + len + 4;
  }
  return events;
}

fs::path only_file(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  EXPECT_EQ(files.size(), 1u) << dir;
  return files.empty() ? fs::path() : files[0];
}

}  // namespace

TEST(TensorBoard, Crc32cOfTheCheckStringIsTheCastagnoliValue) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  const uint32_t crc = crc32c("123456789", 9);
  EXPECT_EQ(masked_crc32c("123456789", 9), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

TEST(TensorBoard, WritesParseableScalarEventsForTrainingAndValidation) {
  TempDir dir("tensorboard");
  Rig s;
  History h = s.fit(3, {std::make_shared<callbacks::TensorBoard>(dir.path.string())});

  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  const std::regex name(std::string(R"(events\.out\.tfevents\.(\d+)\.)") + std::regex_replace(
      host, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)"));
  const std::map<std::string, std::string> prefix = {{"train", ""}, {"validation", "val_"}};
  for (const auto& [sub, key_prefix] : prefix) {
    const fs::path file = only_file(dir.path / sub);
    std::smatch m;
    const std::string filename = file.filename().string();
    ASSERT_TRUE(std::regex_match(filename, m, name)) << filename;
    const long long ts = std::stoll(m[1]);
    EXPECT_GT(ts, 1600000000LL);

    const auto events = read_events(file);
    ASSERT_EQ(events.size(), 1u + 3u * 2u) << sub;  // the version record, then loss + accuracy per epoch
    EXPECT_EQ(events[0].file_version, "brain.Event:2");
    EXPECT_GT(events[0].wall_time, 1.6e9);
    std::map<std::string, std::vector<std::pair<int64_t, float>>> by_tag;
    for (size_t i = 1; i < events.size(); ++i) {
      ASSERT_EQ(events[i].scalars.size(), 1u);
      by_tag[events[i].scalars[0].first].emplace_back(events[i].step, events[i].scalars[0].second);
    }
    ASSERT_EQ(by_tag.size(), 2u) << sub;
    for (const char* metric : {"loss", "accuracy"}) {
      const auto& points = by_tag["epoch_" + std::string(metric)];
      ASSERT_EQ(points.size(), 3u) << sub << " " << metric;
      for (int e = 0; e < 3; ++e) {
        EXPECT_EQ(points[e].first, e);
        EXPECT_EQ(points[e].second, static_cast<float>(h[key_prefix + metric][e])) << sub << " " << metric;
      }
    }
  }
}

TEST(TensorBoard, TwoRunsIntoOneLogDirKeepEveryRecord) {
  TempDir dir("tensorboard_twice");
  Rig s;
  s.fit(2, {std::make_shared<callbacks::TensorBoard>(dir.path.string())});
  s.fit(3, {std::make_shared<callbacks::TensorBoard>(dir.path.string())});
  // One file when both runs fall in the same second, two otherwise: no record is lost.
  size_t records = 0, versions = 0;
  for (const auto& e : fs::directory_iterator(dir.path / "train")) {
    for (const Event& ev : read_events(e.path())) {
      ++records;
      versions += ev.file_version == "brain.Event:2" ? 1 : 0;
    }
  }
  EXPECT_EQ(versions, 2u);
  EXPECT_EQ(records, 2u + (2u + 3u) * 2u);
}

TEST(TensorBoard, ScalarEventEncodesTheFieldsTensorBoardReads) {
  const std::string data = EventWriter::scalar_event("epoch_loss", 0.25f, 300, 1700000000.5);
  const Event ev = parse_event(data);
  EXPECT_EQ(ev.wall_time, 1700000000.5);
  EXPECT_EQ(ev.step, 300);
  ASSERT_EQ(ev.scalars.size(), 1u);
  EXPECT_EQ(ev.scalars[0].first, "epoch_loss");
  EXPECT_EQ(ev.scalars[0].second, 0.25f);
}

// --- the logged lr does not depend on the callbacks' order -------------------------------------

namespace {

// The lr column of a CSVLogger file, one value per epoch.
std::vector<double> csv_column(const fs::path& path, const std::string& column) {
  const auto lines = split_lines(read_text(path));
  std::vector<double> out;
  if (lines.empty()) return out;
  const auto header = split(lines[0], ',');
  const auto at = std::find(header.begin(), header.end(), column);
  if (at == header.end()) {
    ADD_FAILURE() << "no column " << column << " in " << lines[0];
    return out;
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    out.push_back(std::stod(split(lines[i], ',').at(static_cast<size_t>(at - header.begin()))));
  }
  return out;
}

// The (step, value) points of one tag in log_dir/train.
std::vector<std::pair<int64_t, float>> tensorboard_points(const fs::path& log_dir, const std::string& tag) {
  std::vector<std::pair<int64_t, float>> out;
  for (const Event& ev : read_events(only_file(log_dir / "train"))) {
    for (const auto& [t, v] : ev.scalars) {
      if (t == tag) out.emplace_back(ev.step, v);
    }
  }
  return out;
}

}  // namespace

TEST(LearningRateScheduler, CsvAndTensorBoardLogTheEpochsLrWhetherTheyComeBeforeOrAfterIt) {
  for (const bool scheduler_first : {true, false}) {
    SCOPED_TRACE(scheduler_first ? "scheduler first" : "scheduler last");
    TempDir dir(scheduler_first ? "lr_order_first" : "lr_order_last");
    Rig s;  // SGD lr 0.05, halved after each epoch
    auto sched = std::make_shared<callbacks::LearningRateScheduler>(std::make_shared<optim::StepLR>(s.opt, 1, 0.5));
    auto csv = std::make_shared<callbacks::CSVLogger>((dir.path / "log.csv").string());
    auto tb = std::make_shared<callbacks::TensorBoard>((dir.path / "tb").string());
    std::vector<std::shared_ptr<callbacks::Callback>> cbs = {csv, tb};
    cbs.insert(scheduler_first ? cbs.begin() : cbs.end(), sched);
    History h = s.fit(3, cbs);

    const std::vector<double> want{0.05, 0.025, 0.0125};  // the rate each epoch trained with
    EXPECT_EQ(h["lr"], want);
    EXPECT_EQ(split_lines(read_text(dir.path / "log.csv"))[0], "epoch,accuracy,loss,lr,val_accuracy,val_loss");
    EXPECT_EQ(csv_column(dir.path / "log.csv", "lr"), want);
    const auto points = tensorboard_points(dir.path / "tb", "epoch_lr");
    ASSERT_EQ(points.size(), 3u);
    for (int e = 0; e < 3; ++e) {
      EXPECT_EQ(points[e].first, e);
      EXPECT_EQ(points[e].second, static_cast<float>(want[e]));
    }
    EXPECT_DOUBLE_EQ(s.opt.lr(), 0.00625);  // stepped after the last epoch all the same
  }
}

TEST(LearningRateScheduler, TheLambdaFormIsLoggedBeforeCallbacksListedAheadOfIt) {
  TempDir dir("lr_order_lambda");
  Rig s;
  auto csv = std::make_shared<callbacks::CSVLogger>((dir.path / "log.csv").string());
  auto fn = std::make_shared<callbacks::LearningRateScheduler>(
      [](int64_t epoch, double lr) { return epoch == 0 ? lr : lr / 10; });
  s.fit(3, {csv, fn});
  const auto lr = csv_column(dir.path / "log.csv", "lr");
  ASSERT_EQ(lr.size(), 3u);
  EXPECT_DOUBLE_EQ(lr[0], 0.05);
  EXPECT_NEAR(lr[1], 0.005, 1e-15);
  EXPECT_NEAR(lr[2], 0.0005, 1e-15);
}

TEST(LearningRateScheduler, OnlyACallbackThatChangesTheLrMakesFitLogIt) {
  TempDir dir("lr_absent");
  Rig s;
  History h = s.fit(1, {std::make_shared<callbacks::CSVLogger>((dir.path / "log.csv").string())});
  EXPECT_FALSE(h.contains("lr"));
  EXPECT_EQ(split_lines(read_text(dir.path / "log.csv"))[0], "epoch,accuracy,loss,val_accuracy,val_loss");

  // A user's own scheduling callback opts in with changes_lr().
  struct Halve : callbacks::Callback {
    void on_epoch_end(Trainer& t, int64_t, Logs&) override { t.optimizer().set_lr(t.optimizer().lr() / 2); }
    bool changes_lr() const override { return true; }
  };
  Rig r;
  History h2 = r.fit(2, {std::make_shared<Halve>()});
  EXPECT_EQ(h2["lr"], (std::vector<double>{0.05, 0.025}));
}
