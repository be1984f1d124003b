// feature_file: precomputed features delivered as files. Folders are written here byte by byte
// (so the readers are checked against the formats, not against our own writer) and by
// scripts/export_features.py on tiny datasets (so producer and plugin agree on every key).
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/plugin_api.hpp>
#include <nexus/sha256.hpp>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "nexus/data/dataset.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

std::shared_ptr<Teacher> open(const std::string& path, Options extra = {}) {
  extra.set("path", path);
  return builtin_registry().create_teacher("feature_file", extra);
}

std::string open_error(const std::string& path, Options extra = {}) {
  try {
    open(path, std::move(extra));
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string raw_sha256(const std::string& data) {
  const auto hex = sha256_hex(data);
  std::string out;
  for (std::size_t i = 0; i < 64; i += 2) out += char(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

std::string bytes_of(const torch::Tensor& t) {
  const auto c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), std::size_t(c.numel() * c.element_size()));
}

torch::Tensor key_tensor(const std::vector<std::string>& inputs) {
  auto k = torch::empty({int64_t(inputs.size()), 32}, torch::kUInt8);
  for (std::size_t i = 0; i < inputs.size(); ++i) std::memcpy(k[int64_t(i)].data_ptr(), raw_sha256(inputs[i]).data(), 32);
  return k;
}

void write_file(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

void write_safetensors(const fs::path& p, const torch::Tensor& keys, const torch::Tensor& features) {
  const auto kb = bytes_of(keys), fb = bytes_of(features);
  const std::string fdt = features.scalar_type() == torch::kFloat16 ? "F16" : "F32";
  nlohmann::json h = {
      {"keys", {{"dtype", "U8"}, {"shape", {keys.size(0), 32}}, {"data_offsets", {0, kb.size()}}}},
      {"features", {{"dtype", fdt}, {"shape", {features.size(0), features.size(1)}}, {"data_offsets", {kb.size(), kb.size() + fb.size()}}}}};
  auto header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[std::size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  write_file(p, len + header + kb + fb);
}

void write_npy(const fs::path& p, const torch::Tensor& t) {
  const std::string descr = t.scalar_type() == torch::kUInt8 ? "|u1" : t.scalar_type() == torch::kFloat16 ? "<f2" : "<f4";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + std::to_string(t.size(0)) + ", " +
                       std::to_string(t.size(1)) + "), }";
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header += '\n';
  const std::string len{char(header.size() & 0xff), char(header.size() >> 8)};
  write_file(p, std::string("\x93NUMPY\x01\x00", 8) + len + header + bytes_of(t));
}

// A text feature folder for `inputs` with rows `features`, split over shards of `per_shard` rows.
void write_folder(const fs::path& dir, const std::vector<std::string>& inputs, const torch::Tensor& features,
                  const std::string& format, int64_t per_shard) {
  fs::create_directories(dir);
  nlohmann::json shards = nlohmann::json::array();
  for (int64_t start = 0, s = 0; start < int64_t(inputs.size()); start += per_shard, ++s) {
    const auto end = std::min<int64_t>(start + per_shard, int64_t(inputs.size()));
    const auto keys = key_tensor(std::vector<std::string>(inputs.begin() + start, inputs.begin() + end));
    const auto rows = features.slice(0, start, end);
    const auto stem = "part-" + std::to_string(s);
    if (format == "safetensors") {
      write_safetensors(dir / (stem + ".safetensors"), keys, rows);
      shards.push_back({{"file", stem + ".safetensors"}, {"rows", end - start},
                        {"sha256", sha256_file((dir / (stem + ".safetensors")).string())}});
    } else {
      write_npy(dir / (stem + ".features.npy"), rows);
      write_npy(dir / (stem + ".keys.npy"), keys);
      shards.push_back({{"file", stem + ".features.npy"}, {"rows", end - start},
                        {"sha256", sha256_file((dir / (stem + ".features.npy")).string())},
                        {"keys_file", stem + ".keys.npy"}, {"keys_sha256", sha256_file((dir / (stem + ".keys.npy")).string())}});
    }
  }
  nlohmann::json m = {{"format_version", 1}, {"modality", "text"}, {"width", features.size(1)},
                      {"dtype", features.scalar_type() == torch::kFloat16 ? "float16" : "float32"}, {"key", "sha256-utf8"},
                      {"shards", shards}, {"examples", {inputs[0], inputs[1]}}};
  std::ofstream(dir / "features.json") << m.dump(1);
}

const std::vector<std::string> kTexts = {"alpha", "beta", "gamma", "δέλτα (UTF-8)", "epsilon", ""};

torch::Tensor known_rows() {  // row i = [10 i, 10 i + 1, 10 i + 2]
  return torch::arange(int64_t(kTexts.size()), torch::kFloat).unsqueeze(1) * 10 + torch::arange(3, torch::kFloat);
}

int run_script(const std::string& args, bool quiet = false) {
  const auto script = fs::path(NEXUS_TEST_DATA_DIR).parent_path() / "scripts" / "export_features.py";
  return std::system(("python3 '" + script.string() + "' " + args + (quiet ? " >/dev/null 2>&1" : " >/dev/null")).c_str());
}

void write_manifest(const fs::path& dir, const std::vector<std::string>& files) {
  nlohmann::json f = nlohmann::json::object();
  for (const auto& name : files) f[name] = sha256_file((dir / name).string());
  std::ofstream(dir / "manifest.json") << nlohmann::json{{"dataset_id", "toy"}, {"classes", {"a", "b"}}, {"files", f}}.dump();
}

void write_idx(const fs::path& p, const torch::Tensor& u8) {
  std::string bytes{0, 0, 8, char(u8.dim())};
  for (int64_t i = 0; i < u8.dim(); ++i)
    for (int shift = 24; shift >= 0; shift -= 8) bytes += char((u8.size(i) >> shift) & 0xff);
  write_file(p, bytes + bytes_of(u8));
}

}  // namespace

TEST_CASE("feature_file @example: the probe's in-memory table returns its rows and refuses unknown inputs") {
  auto t = open("@example");
  CHECK(t->modality() == Modality::Text);
  CHECK(t->width() == 4);
  const auto in = t->example_input(6);  // cycles the four sentences
  const auto f = t->encode(in);
  REQUIRE(f.sizes() == torch::IntArrayRef({6, 4}));
  CHECK(torch::allclose(f[2], torch::tensor({2.f, 2.1f, 2.2f, 2.3f})));
  CHECK(torch::equal(f[5], f[1]));
  CHECK(!f.requires_grad());
  CHECK(t->fingerprint().str() == open("/some/composition/dir/@example")->fingerprint().str());
  CHECK_NOTHROW(t->self_test());

  auto mixed = t->example_input(3);
  mixed.texts[1] = "never exported";
  mixed.texts[2] = "nor this";
  const auto want = "2 of 3 inputs have no precomputed features (first missing: input 1, key sha256-utf8 " +
                    sha256_hex("never exported") + ", text \"never exported\")";
  CHECK_THROWS_WITH(t->encode(mixed), doctest::Contains(want.c_str()));
  TeacherInput images;
  images.tensor = torch::zeros({2, 1, 4, 4});
  CHECK_THROWS_WITH(t->encode(images), doctest::Contains("holds text features: fill TeacherInput::texts"));
}

TEST_CASE("feature_file: safetensors and npy shards give back exactly the stored rows, in input order") {
  for (const char* format : {"safetensors", "npy"}) {
    for (const char* mmap : {"true", "false"}) {
      CAPTURE(format);
      CAPTURE(mmap);
      TempDir dir;
      write_folder(dir.path, kTexts, known_rows(), format, 4);  // two shards: 4 + 2 rows
      auto t = open(dir.str(), Options().set("mmap", mmap));
      CHECK(t->width() == 3);
      const auto f = t->encode(texts({"epsilon", "alpha", "δέλτα (UTF-8)", "", "epsilon"}));
      CHECK(torch::equal(f, torch::tensor({{40.f, 41.f, 42.f}, {0.f, 1.f, 2.f}, {30.f, 31.f, 32.f}, {50.f, 51.f, 52.f},
                                           {40.f, 41.f, 42.f}})));
      CHECK(t->encode(texts({})).size(0) == 0);
      CHECK(torch::equal(t->encode(t->example_input(2)), known_rows().slice(0, 0, 2)));
      CHECK_NOTHROW(t->self_test());
    }
  }
  // float16 features come back as float32.
  TempDir half;
  write_folder(half.path, kTexts, known_rows().to(torch::kFloat16) / 64, "safetensors", 100);
  const auto f = open(half.str())->encode(texts({"gamma"}));
  CHECK((f.scalar_type() == torch::kFloat));
  CHECK(torch::equal(f[0], torch::tensor({20.f, 21.f, 22.f}) / 64));
}

TEST_CASE("feature_file: corrupt or inconsistent folders are refused, naming the file") {
  TempDir dir;
  write_folder(dir.path, kTexts, known_rows(), "npy", 4);
  const auto good = open(dir.str())->fingerprint();
  // Flip one byte of the second shard's features.
  const auto shard = dir.path / "part-1.features.npy";
  auto bytes = read_text(shard);
  bytes[bytes.size() - 5] ^= 0x40;
  write_file(shard, bytes);
  const auto err = open_error(dir.str());
  CHECK(err.find("shard '" + shard.string() + "' is corrupt: its sha256 is " + sha256_file(shard.string())) != std::string::npos);
  // verify=false skips the checksums (and so serves the corrupted row).
  CHECK(open_error(dir.str(), Options().set("verify", "false")).empty());

  // New features mean a new fingerprint; the same features elsewhere keep it.
  TempDir same, other;
  write_folder(same.path, kTexts, known_rows(), "npy", 4);
  write_folder(other.path, kTexts, known_rows() + 1, "npy", 4);
  CHECK(open(same.str())->fingerprint().str() == good.str());
  CHECK(open(other.str())->fingerprint().str() != good.str());
  CHECK(good.plugin == "feature_file");

  // The same input twice is ambiguous.
  TempDir dup;
  write_folder(dup.path, {"a", "b", "a"}, torch::zeros({3, 2}), "safetensors", 2);
  CHECK(open_error(dup.str()).find("appears twice: row 0 of shard 'part-1.safetensors' and row 0 of shard 'part-0.safetensors'") !=
        std::string::npos);

  // Manifest errors.
  CHECK(open_error("/nonexistent/features").find("folder '/nonexistent/features' does not exist") != std::string::npos);
  TempDir empty;
  CHECK(open_error(empty.str()).find("has no features.json") != std::string::npos);
  auto m = nlohmann::json::parse(read_text(same.path / "features.json"));
  m["width"] = 4;
  std::ofstream(same.path / "features.json") << m.dump();
  CHECK(open_error(same.str()).find("features must be [rows, 4], got [4, 3]") != std::string::npos);
  m["width"] = 3;
  m["key"] = "sha256-bytes";
  std::ofstream(same.path / "features.json") << m.dump();
  CHECK(open_error(same.str()).find("key 'sha256-bytes' does not fit modality text") != std::string::npos);
  m["key"] = "sha256-utf8";
  m["shards"][0]["rows"] = 5;
  std::ofstream(same.path / "features.json") << m.dump();
  CHECK(open_error(same.str()).find("features.json says 5 rows, the shard has 4 keys and 4 feature rows") != std::string::npos);
  m["shards"][0]["rows"] = 4;
  m["shards"][0]["file"] = "../elsewhere.features.npy";
  std::ofstream(same.path / "features.json") << m.dump();
  CHECK(open_error(same.str()).find("must be a plain name inside") != std::string::npos);
  m["format_version"] = 2;
  std::ofstream(same.path / "features.json") << m.dump();
  CHECK(open_error(same.str()).find("format_version 2 is not supported") != std::string::npos);
  // A truncated safetensors shard (checksums off, so the reader itself must notice).
  TempDir cut;
  write_folder(cut.path, kTexts, known_rows(), "safetensors", 100);
  const auto st = cut.path / "part-0.safetensors";
  auto full = read_text(st);
  write_file(st, full.substr(0, full.size() - 8));
  CHECK(open_error(cut.str(), Options().set("verify", "false")).find("truncated") != std::string::npos);
}

TEST_CASE("export_features.py writes folders the plugin reads: text TSV and IDX images, both formats") {
  TempDir root;
  // A text dataset as scripts/build_datasets.py writes it (with a duplicate text across splits).
  const auto text_dir = root.path / "toy_text";
  fs::create_directories(text_dir);
  std::ofstream(text_dir / "train.tsv") << "text\tlabel\tid\nthe cat sat\t0\ta1\nüber naïve café\t1\ta2\nthe cat sat\t0\ta3\n";
  std::ofstream(text_dir / "val.tsv") << "text\tlabel\tid\na dog barked\t1\tb1\n";
  write_manifest(text_dir, {"train.tsv", "val.tsv"});
  const auto st = root.path / "st", np = root.path / "np", half = root.path / "half";
  REQUIRE(run_script("'" + text_dir.string() + "' --out '" + st.string() + "' --width 16") == 0);
  REQUIRE(run_script("'" + text_dir.string() + "' --out '" + np.string() + "' --width 16 --format npy --shard-rows 2") == 0);
  REQUIRE(run_script("'" + text_dir.string() + "' --out '" + half.string() + "' --width 16 --dtype float16") == 0);
  CHECK(run_script("'" + text_dir.string() + "' --out '" + st.string() + "'", true) == 2 * 256);  // exists: exit 2 without --force

  const auto manifest = nlohmann::json::parse(read_text(st / "features.json"));
  CHECK(manifest["shards"][0]["rows"] == 3);  // each input once
  CHECK(manifest["producer"]["dataset_ids"]["toy_text"] == "toy");
  const auto data = load_dataset(root.str(), "toy_text", "train");
  auto a = open(st.string()), b = open(np.string()), h = open(half.string());
  const auto fa = a->encode(data.batch(0, data.size()));
  CHECK(fa.sizes() == torch::IntArrayRef({3, 16}));
  CHECK(torch::allclose(fa.norm(2, 1), torch::ones({3})));
  CHECK(torch::equal(fa[0], fa[2]));
  CHECK(torch::equal(b->encode(data.batch(0, data.size())), fa));
  CHECK(torch::allclose(h->encode(data.batch(0, data.size())), fa, 1e-3, 1e-3));
  CHECK(a->fingerprint().str() != b->fingerprint().str());  // different files, different manifest
  CHECK(a->encode(a->example_input(3)).size(0) == 3);
  CHECK_THROWS_WITH(a->encode(texts({"the cat sat", "the cat sat "})),
                    doctest::Contains("1 of 2 inputs have no precomputed features (first missing: input 1"));

  // An image dataset: the keys are the float32 bytes the dataset reader hands a teacher.
  const auto img_dir = root.path / "toy_images";
  fs::create_directories(img_dir);
  // Every pixel value 0..255 occurs, so every value's float32 / 255 must agree between the sides.
  const auto pixels = (torch::arange(5 * 8 * 8) * 7 % 256).to(torch::kUInt8).view({5, 8, 8});
  write_idx(img_dir / "images_test.idx", pixels);
  write_idx(img_dir / "labels_test.idx", torch::tensor({0, 1, 0, 1, 1}, torch::kUInt8));
  write_manifest(img_dir, {"images_test.idx", "labels_test.idx"});
  const auto img_out = root.path / "img";
  REQUIRE(run_script("'" + img_dir.string() + "' --out '" + img_out.string() + "' --width 8 --format npy") == 0);
  const auto images = load_dataset(root.str(), "toy_images", "test");
  auto t = open(img_out.string());
  CHECK(t->modality() == Modality::Image);
  const auto batch = images.batch(0, images.size());
  const auto f = t->encode(batch);
  CHECK(f.sizes() == torch::IntArrayRef({5, 8}));
  CHECK(torch::allclose(f.norm(2, 1), torch::ones({5})));
  // The manifest's examples are real inputs, in the shape the host uses.
  const auto ex = t->example_input(2);
  CHECK(ex.tensor.sizes() == torch::IntArrayRef({2, 1, 8, 8}));
  CHECK(torch::equal(t->encode(ex), f.slice(0, 0, 2)));
  TeacherInput shifted;
  shifted.tensor = batch.tensor.clone();
  shifted.tensor[3][0][0][0] += 1e-3f;
  CHECK_THROWS_WITH(t->encode(shifted), doctest::Contains("1 of 5 inputs have no precomputed features (first missing: input 3, "
                                                          "key sha256-bytes"));
}
