// char_rnn: a character-level language model (Embedding → LSTM or GRU → Linear over the
// characters seen) trained with a hand-written loop on any plain-text file, printing text
// sampled at a temperature as it trains so the improvement can be read. Without --text it
// trains on a small built-in text: the cumulative nursery rhyme "This Is the House That
// Jack Built" (traditional, public domain), built verse by verse below.
//
// What "test accuracy" measures: the last 10% of the text is held out from training; after
// training the model reads it (primed with the training text just before it) and predicts
// every next character; the accuracy is the fraction of those argmax predictions that are
// right. With the built-in rhyme the held-out lines repeat lines seen in training, so a
// high figure there shows that the model learned the text's phrases, not that it would
// generalize to other text.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "models.h"
#include "sample_utils.h"

using namespace ember;

namespace {

// "This Is the House That Jack Built": each verse adds one line in front of the last.
std::string built_in_text() {
  const std::vector<std::pair<const char*, const char*>> lines = {
      // (what it is, what it did to the one before)
      {"the malt", "lay in"},
      {"the rat", "ate"},
      {"the cat", "killed"},
      {"the dog", "worried"},
      {"the cow with the crumpled horn", "tossed"},
      {"the maiden all forlorn", "milked"},
      {"the man all tattered and torn", "kissed"},
      {"the priest all shaven and shorn", "married"},
      {"the cock that crowed in the morn", "waked"},
      {"the farmer sowing his corn", "kept"},
  };
  std::string text = "This is the house that Jack built.\n\n";
  for (size_t v = 0; v < lines.size(); ++v) {
    text += std::string("This is ") + lines[v].first + ",\n";
    for (size_t k = v + 1; k-- > 0;) {
      text += std::string("That ") + lines[k].second + " ";
      text += k == 0 ? std::string("the house that Jack built.\n\n") : std::string(lines[k - 1].first) + ",\n";
    }
  }
  return text;
}

// Characters <-> ids, over the characters the text uses.
struct Vocabulary {
  std::vector<char> chars;
  int id[256];
  explicit Vocabulary(const std::string& text) {
    bool seen[256] = {false};
    for (unsigned char c : text) seen[c] = true;
    for (int c = 0; c < 256; ++c) {
      id[c] = -1;
      if (seen[c]) {
        id[c] = static_cast<int>(chars.size());
        chars.push_back(static_cast<char>(c));
      }
    }
  }
  int64_t size() const { return static_cast<int64_t>(chars.size()); }
};

// Embedding → LSTM or GRU → Linear: samples/models.h.
using samples::CharModel;

// `length` characters drawn one at a time from softmax(logits / temperature), after
// reading `prime`.
std::string generate(CharModel& model, const Vocabulary& vocab, const std::string& prime,
                     int64_t length, double temperature, std::mt19937_64& gen, Device device) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  CharModel::State state;
  std::vector<int64_t> ids;
  for (unsigned char c : prime) {
    if (vocab.id[c] >= 0) ids.push_back(vocab.id[c]);
  }
  if (ids.empty()) ids.push_back(0);
  std::string out;
  Tensor logits = model.step(
      Tensor::from_vector(ids, {1, static_cast<int64_t>(ids.size())}, device), &state);
  for (int64_t i = 0; i < length; ++i) {
    const Tensor last = logits.select(1, logits.size(1) - 1).reshape({vocab.size()});
    const std::vector<float> p = softmax(mul(last, 1.0 / temperature), 0).cpu().to_vector<float>();
    std::discrete_distribution<int64_t> pick(p.begin(), p.end());
    const int64_t next = pick(gen);
    out += vocab.chars[static_cast<size_t>(next)];
    logits = model.step(Tensor::from_vector(std::vector<int64_t>{next}, {1, 1}, device), &state);
  }
  model.train(was_training);
  return out;
}

// Next-character accuracy and mean loss on ids[split:], primed with up to `context`
// characters before it.
std::pair<double, double> held_out(CharModel& model, const std::vector<int64_t>& ids, size_t split,
                                   int64_t context, Device device) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const size_t begin = split - std::min<size_t>(split, static_cast<size_t>(context));
  const std::vector<int64_t> in(ids.begin() + static_cast<int64_t>(begin), ids.end() - 1);
  const std::vector<int64_t> target(ids.begin() + static_cast<int64_t>(begin) + 1, ids.end());
  const int64_t n = static_cast<int64_t>(in.size());
  const Tensor logits = model(Tensor::from_vector(in, {1, n}, device)).reshape({n, -1});
  const int64_t scored = static_cast<int64_t>(ids.size() - split);
  const Tensor tail = logits.narrow(0, n - scored, scored);
  const Tensor y = Tensor::from_vector(target, {n}, device).narrow(0, n - scored, scored);
  const double acc = sum(eq(argmax(tail, 1), y)).item<int64_t>() / static_cast<double>(scored);
  const double loss = cross_entropy(tail, y).item();
  model.train(was_training);
  return {acc, loss};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Train a character-level LSTM/GRU language model on a text file and sample from it.\n"
      "Prints text sampled as it trains, then 'test accuracy': the fraction of characters of "
      "the held-out last 10% of the text that the model predicts exactly (argmax) from the "
      "characters before them. Without --text it uses a small built-in cumulative nursery "
      "rhyme whose held-out lines repeat earlier ones, so there the figure shows memorized "
      "phrases, not generalization."};
  samples::CommonOptions o;
  o.epochs = 20;
  o.batch_size = 32;
  o.lr = 3e-3;
  std::string text_path, cell = "lstm", prime;
  int64_t steps = 0, seq_len = 64, hidden = 256, layers = 2, embed = 32, sample_every = 0;
  int64_t sample_length = 240;
  double temperature = 0.7;
  samples::add_common_options(app, o, "train briefly (200 steps of a 1-layer, 128-unit model) as a smoke test");
  samples::add_precision_option(app, o);
  app.add_option("--text", text_path, "plain-text file to train on (default: the built-in rhyme)");
  app.add_option("--cell", cell, "lstm or gru")->check(samples::one_of({"lstm", "gru"}));
  app.add_option("--steps", steps,
                 "training steps (0: --epochs passes over the text, at least 500 steps)")
      ->check(samples::whole_number(0));
  app.add_option("--seq-len", seq_len, "characters per training sequence")->check(samples::whole_number(1));
  app.add_option("--hidden", hidden, "hidden units per layer")->check(samples::whole_number(1));
  app.add_option("--layers", layers, "recurrent layers")->check(samples::whole_number(1));
  app.add_option("--embed", embed, "embedding size")->check(samples::whole_number(1));
  app.add_option("--sample-every", sample_every, "steps between samples (0: five per run)")
      ->check(samples::whole_number(0));
  app.add_option("--sample-length", sample_length, "characters per sample")
      ->check(samples::whole_number(1));
  app.add_option("--temperature", temperature, "sampling temperature")->check(samples::positive_number());
  app.add_option("--prime", prime, "text the samples start from (default: the text's first 4 characters)");
  CLI11_PARSE(app, argc, argv);

  try {
    o.data_parallel = false;  // its own loop: under ember launch each rank trains alone
    const Device device = samples::start(o);
    std::string text;
    if (text_path.empty()) {
      text = built_in_text();
    } else {
      std::ifstream in(text_path, std::ios::binary);
      if (!in) throw IOError("cannot open " + text_path);
      text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    if (o.quick) {
      hidden = std::min<int64_t>(hidden, 128);
      layers = 1;
      if (steps == 0) steps = 200;
    }
    EMBER_CHECK(static_cast<int64_t>(text.size()) >= 20 * (seq_len + 1),
                "char_rnn: the text has ", text.size(), " characters; at least ",
                20 * (seq_len + 1), " are needed for --seq-len ", seq_len);
    const Vocabulary vocab(text);
    std::vector<int64_t> ids;
    for (unsigned char c : text) ids.push_back(vocab.id[c]);
    const size_t split = ids.size() * 9 / 10;  // the last 10% is held out
    if (steps == 0) {
      const int64_t per_pass = std::max<int64_t>(
          1, static_cast<int64_t>(split) / (o.batch_size * seq_len));
      steps = std::max<int64_t>(500, o.epochs * per_pass);
    }
    if (sample_every == 0) sample_every = std::max<int64_t>(1, steps / 5);
    if (prime.empty()) prime = text.substr(0, 4);
    std::printf("text: %s, %zu characters (%zu for training, %zu held out), %lld distinct\n",
                text_path.empty() ? "built-in rhyme" : text_path.c_str(), text.size(), split,
                text.size() - split, static_cast<long long>(vocab.size()));

    CharModel model(vocab.size(), embed, hidden, layers, cell == "gru");
    model.to(device);
    std::printf("%s\n%lld parameters\n", model.repr().c_str(),
                static_cast<long long>(model.num_parameters()));
    optim::Adam opt(model.parameters(), {.lr = o.lr});
    samples::MixedPrecision mp(o.precision);
    std::mt19937_64 gen(o.seed);
    std::uniform_int_distribution<size_t> start(0, split - static_cast<size_t>(seq_len) - 1);
    const auto t0 = std::chrono::steady_clock::now();
    double running = 0.0, first_loss = 0.0;
    for (int64_t step = 1; step <= steps; ++step) {
      // A batch of random windows of the training text; targets are the next characters.
      std::vector<int64_t> x, y;
      for (int64_t b = 0; b < o.batch_size; ++b) {
        const size_t s = start(gen);
        x.insert(x.end(), ids.begin() + static_cast<int64_t>(s),
                 ids.begin() + static_cast<int64_t>(s) + seq_len);
        y.insert(y.end(), ids.begin() + static_cast<int64_t>(s) + 1,
                 ids.begin() + static_cast<int64_t>(s) + seq_len + 1);
      }
      const Tensor xs = Tensor::from_vector(x, {o.batch_size, seq_len}, device);
      const Tensor ys = Tensor::from_vector(y, {o.batch_size * seq_len}, device);
      Tensor loss;
      {
        const auto region = mp.autocast();
        loss = cross_entropy(model(xs).reshape({o.batch_size * seq_len, vocab.size()}), ys);
      }
      opt.zero_grad();
      mp.backward_and_step(loss, opt, [&] { optim::clip_grad_norm(model.parameters(), 1.0); });
      const double l = loss.item();
      if (step == 1) first_loss = l;
      running = step == 1 ? l : 0.9 * running + 0.1 * l;
      if (step % sample_every == 0 || step == steps) {
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("\n--- step %lld/%lld, loss %.3f, %.1f s ---\n%s%s\n",
                    static_cast<long long>(step), static_cast<long long>(steps), running, secs,
                    prime.c_str(),
                    generate(model, vocab, prime, sample_length, temperature, gen, device).c_str());
        std::fflush(stdout);
      }
    }
    if (o.quick) samples::print_loss_check(first_loss, running);
    const auto [acc, test_loss] = held_out(model, ids, split, seq_len, device);
    std::printf("\nheld-out next-character loss %.3f (perplexity %.2f)\n", test_loss,
                std::exp(test_loss));
    std::printf("test accuracy: %.2f%%\n", 100.0 * acc);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
