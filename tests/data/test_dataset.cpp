// Reading datasets in the format scripts/build_datasets.py writes.
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <nexus/sha256.hpp>
#include <nexus/teacher.hpp>

#include "nexus/data/dataset.hpp"
#include "test_support.hpp"

using namespace nexus;
using namespace nexus::test;

namespace {

void write_text_dataset(const fs::path& dir, const std::string& tsv) {
  fs::create_directories(dir);
  std::ofstream(dir / "val.tsv") << tsv;
  std::ofstream(dir / "manifest.json") << R"({"dataset_id": "abc123", "classes": ["a", "b", "c"], "files": {"val.tsv": ")"
                                       << sha256_file((dir / "val.tsv").string()) << "\"}}";
}

}  // namespace

TEST_CASE("text datasets: header row, labels, batches, checksums") {
  TempDir root;
  write_text_dataset(root.path / "toy", "text\tlabel\tid\nfirst one\t2\tx1\nsecond\t0\tx2\n");
  auto d = load_dataset(root.str(), "toy", "val");
  CHECK(d.modality == "text");
  CHECK(d.dataset_id == "abc123");
  CHECK(d.size() == 2);
  CHECK(d.texts == std::vector<std::string>{"first one", "second"});
  CHECK(torch::equal(d.labels, torch::tensor({2, 0}, torch::kLong)));
  CHECK(d.batch(1, 1).texts == std::vector<std::string>{"second"});

  CHECK_THROWS_WITH_AS(load_dataset(root.str(), "toy", "test"), "dataset 'toy' has no split 'test' (test.tsv)", DatasetError);
  CHECK_THROWS_WITH_AS(load_dataset(root.str(), "nope", "val"), doctest::Contains("dataset 'nope' not found"), DatasetError);

  std::ofstream(root.path / "toy" / "val.tsv", std::ios::app) << "tampered\t1\tx3\n";
  const auto expected = "corrupt dataset file " + (root.path / "toy" / "val.tsv").string() + ": checksum mismatch";
  CHECK_THROWS_WITH_AS(load_dataset(root.str(), "toy", "val"), doctest::Contains(expected.c_str()), DatasetError);

  write_text_dataset(root.path / "bad", "text\tlabel\tid\nhello\tnoun.animal\tx\n");
  CHECK_THROWS_WITH_AS(load_dataset(root.str(), "bad", "val"), doctest::Contains("val.tsv:2: label 'noun.animal' is not a class index"),
                       DatasetError);
  write_text_dataset(root.path / "range", "text\tlabel\tid\nhello\t7\tx\n");
  CHECK_THROWS_WITH_AS(load_dataset(root.str(), "range", "val"), doctest::Contains("has labels outside its 3 classes"), DatasetError);
}
