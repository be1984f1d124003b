// Byte-level BPE, exactly as Hugging Face `tokenizers` (0.23) encodes with the tokenizer.json files
// of GPT-2, Llama 3, Qwen2 and SmolLM2, and as llama.cpp reads the same vocabularies from GGUF.
//
// Design note. encode() runs the pipeline of `tokenizers`, stage by stage:
//   1. Invalid UTF-8 is repaired (U+FFFD per maximal invalid subsequence): HF takes a Python str,
//      so this is what a caller who decoded bytes with errors="replace" gets.
//   2. Added tokens are split out of the raw text, leftmost first and longest among those that
//      start at the same byte (HF's Aho-Corasick LeftmostLongest): first the tokens marked
//      normalized=false (all special tokens in real files), then, in the normalized remainder, the
//      normalized ones (their text normalized too).
//   3. The normalizer (none, or NFC for Qwen2) runs on each remaining piece.
//   4. The pre-tokenizer stages split each piece further: Split with one of three known regexes
//      (hand-written matchers, bpe_pretokenize.cpp), Digits, and last ByteLevel (an optional
//      leading space per piece, then optionally the GPT-2 regex). Empty pieces are dropped.
//   5. Each piece (a "word") becomes byte-level symbols, one per byte (GPT-2's bytes_to_unicode),
//      and the BPE model merges them: with ignore_merges (Llama 3) a word that is a whole token is
//      that token; otherwise HF's Word::merge_all is replicated step for step, a min-heap of
//      (rank, position) that skips stale entries by checking the merged id, because a plain
//      "lowest rank first" loop differs from it when two merges produce the same token.
//   6. The post-processor's tokens (TemplateProcessing, e.g. Llama 3's BOS) go around the ids
//      when add_special is set.
// Anything in a tokenizer.json that would change ids and is not implemented here (another model
// or normalizer, an unknown regex, dropout, byte_fallback, lstrip/rstrip/single_word added
// tokens, truncation, padding) is refused by name rather than approximated. The decoder is not
// read: decode() is byte-level. Word results are cached (bounded, like HF's cache) behind a
// shared mutex that is only ever try-locked, so concurrent encodes never wait on one another.
#include "nexus/support/bpe.hpp"

#include <nexus/text.hpp>

#include <mutex>
#include <queue>

#include "bpe_impl.hpp"

namespace nexus::support {
using bpe::Merge;
using bpe::Stage;

namespace {

std::string clip(const std::string& s, std::size_t n = 40) { return s.size() <= n ? s : s.substr(0, n) + "..."; }

}  // namespace

void BpeTokenizer::Impl::set_token(int64_t id, const std::string& text, bool is_added_token) {
  if (id < 0 || uint64_t(id) >= kMaxBpeVocabSize)
    fail("token id " + std::to_string(id) + " is outside [0, " + std::to_string(kMaxBpeVocabSize) +
         ") (kMaxBpeVocabSize)");
  if (text.size() > kMaxBpeTokenBytes)
    fail("token " + std::to_string(id) + " has " + std::to_string(text.size()) + " bytes, more than " +
         std::to_string(kMaxBpeTokenBytes) + " (kMaxBpeTokenBytes)");
  if (std::size_t(id) >= tokens.size()) {
    tokens.resize(std::size_t(id) + 1);
    is_added.resize(std::size_t(id) + 1);
  }
  tokens[std::size_t(id)] = text;
  is_added[std::size_t(id)] = is_added_token;
  if (is_added_token) added[text] = int32_t(id);
}

void BpeTokenizer::Impl::add_merge(const std::string& left, const std::string& right, std::size_t rank) {
  const auto id_of = [&](const std::string& t) {
    const auto it = vocab.find(t);
    if (it == vocab.end())
      fail("merge " + std::to_string(rank) + " ('" + clip(left) + " " + clip(right) + "') names '" + clip(t) +
           "', which is not in the vocabulary");
    return it->second;
  };
  const int32_t a = id_of(left), b = id_of(right), merged = id_of(left + right);
  // A later duplicate replaces an earlier one, as building HF's merge map does.
  merges[(uint64_t(uint32_t(a)) << 32) | uint32_t(b)] = {int32_t(rank), merged};
}

void BpeTokenizer::Impl::finish() {
  if (vocab.empty()) fail("the vocabulary is empty");
  // ByteLevel maps bytes to characters; a stage after it would see those characters, which
  // encode() does not model, so it must come once and last.
  std::size_t byte_level = 0;
  for (const auto& s : stages) byte_level += s.kind == Stage::kByteLevel;
  if (stages.empty() || stages.back().kind != Stage::kByteLevel || byte_level != 1)
    fail("the pre-tokenizer must end with ByteLevel, once: only byte-level BPE is supported");
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab.find(bpe::byte_char(uint8_t(b)));
    byte_ids[std::size_t(b)] = it == vocab.end() ? -1 : it->second;
  }
  for (const int32_t id : prefix)
    if (id < 0 || std::size_t(id) >= tokens.size()) fail("special token id " + std::to_string(id) + " is not a token");
  for (const int32_t id : suffix)
    if (id < 0 || std::size_t(id) >= tokens.size()) fail("special token id " + std::to_string(id) + " is not a token");
  if (bos < 0 && !prefix.empty()) bos = prefix.front();
  if (eos < 0 && !suffix.empty()) eos = suffix.back();
  raw_added.sort();
  normalized_added.sort();
}

std::vector<int32_t> BpeTokenizer::Impl::merge_word(std::string_view w) const {
  struct Symbol {
    int32_t id, prev, next;
    bool removed;
  };
  std::vector<Symbol> sym;
  sym.reserve(w.size());
  int32_t pending_unk = -1;  // a run of unknown characters, fused when fuse_unk
  const auto push = [&](int32_t id) { sym.push_back({id, int32_t(sym.size()) - 1, int32_t(sym.size()) + 1, false}); };
  for (const char c : w) {
    const int32_t id = byte_ids[static_cast<unsigned char>(c)];
    if (id >= 0) {
      if (pending_unk >= 0) push(pending_unk);
      pending_unk = -1;
      push(id);
    } else if (unk_id >= 0) {  // without an unk token HF drops the character
      if (pending_unk >= 0 && !fuse_unk) push(pending_unk);
      pending_unk = unk_id;
    }
  }
  if (pending_unk >= 0) push(pending_unk);
  if (!sym.empty()) sym.back().next = -1;

  // HF's Word::merge_all: a min-heap on (rank, position); an entry is stale when the pair at its
  // position no longer merges into the entry's token.
  struct Entry {
    int32_t rank, pos, id;
    bool operator<(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const auto lookup = [&](int32_t a, int32_t b) -> const Merge* {
    const auto it = merges.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
    return it == merges.end() ? nullptr : &it->second;
  };
  std::priority_queue<Entry> queue;
  for (std::size_t i = 0; i + 1 < sym.size(); ++i)
    if (const Merge* m = lookup(sym[i].id, sym[i + 1].id)) queue.push({m->rank, int32_t(i), m->id});
  while (!queue.empty()) {
    const Entry top = queue.top();
    queue.pop();
    Symbol& cur = sym[std::size_t(top.pos)];
    if (cur.removed || cur.next < 0) continue;
    const Symbol right = sym[std::size_t(cur.next)];
    const Merge* m = lookup(cur.id, right.id);
    if (!m || m->id != top.id) continue;
    cur.id = top.id;
    sym[std::size_t(cur.next)].removed = true;
    cur.next = right.next;
    if (right.next >= 0) sym[std::size_t(right.next)].prev = top.pos;
    if (cur.prev >= 0)
      if (const Merge* p = lookup(sym[std::size_t(cur.prev)].id, cur.id)) queue.push({p->rank, cur.prev, p->id});
    if (cur.next >= 0)
      if (const Merge* n = lookup(cur.id, sym[std::size_t(cur.next)].id)) queue.push({n->rank, top.pos, n->id});
  }
  std::vector<int32_t> ids;
  for (const auto& s : sym)
    if (!s.removed) ids.push_back(s.id);
  return ids;
}

void BpeTokenizer::Impl::word(std::string_view w, std::vector<int32_t>* out) const {
  const bool cacheable = w.size() <= bpe::kCacheMaxWordBytes;
  thread_local std::string key;  // reused: no allocation per lookup
  if (cacheable) {
    key.assign(w);
    std::shared_lock lock(cache_mutex, std::try_to_lock);
    if (lock.owns_lock()) {
      const auto it = cache.find(key);
      if (it != cache.end()) {
        out->insert(out->end(), it->second.begin(), it->second.end());
        return;
      }
    }
  }
  std::vector<int32_t> ids;
  if (ignore_merges) {
    std::string mapped;
    for (const char c : w) mapped += bpe::byte_char(static_cast<unsigned char>(c));
    if (const auto it = vocab.find(mapped); it != vocab.end()) ids.push_back(it->second);
  }
  if (ids.empty()) ids = merge_word(w);
  out->insert(out->end(), ids.begin(), ids.end());
  if (cacheable) {
    std::unique_lock lock(cache_mutex, std::try_to_lock);
    if (lock.owns_lock() && cache.size() < bpe::kCacheCapacity) cache.emplace(key, std::move(ids));
  }
}

void BpeTokenizer::Impl::pre_tokenize(std::string_view piece, std::vector<int32_t>* out) const {
  std::string text(piece);
  std::vector<bpe::Span> spans{{0, uint32_t(text.size())}}, next;
  for (const auto& stage : stages) {
    next.clear();
    for (auto span : spans) {
      if (stage.kind == Stage::kSplit) {
        bpe::split_regex(stage.regex, text, span, &next);
      } else if (stage.kind == Stage::kDigits) {
        bpe::split_digits(stage.flag, text, span, &next);
      } else {
        if (stage.flag && text[span.begin] != ' ') {  // add_prefix_space, per piece as HF does
          std::string copy = " " + text.substr(span.begin, span.end - span.begin);
          span = {uint32_t(text.size()), uint32_t(text.size() + copy.size())};
          text += copy;
        }
        if (stage.use_regex) bpe::split_regex(bpe::SplitRegex::Gpt2, text, span, &next);
        else next.push_back(span);
      }
    }
    spans.clear();
    for (const auto& s : next)
      if (s.end > s.begin) spans.push_back(s);
  }
  for (const auto& s : spans) word(std::string_view(text).substr(s.begin, s.end - s.begin), out);
}

std::vector<int32_t> BpeTokenizer::encode(const std::string& utf8, bool add_special) const {
  const Impl& m = *impl_;
  // Spans inside the pre-tokenizer are 32-bit byte offsets.
  if (utf8.size() > (std::size_t(1) << 30))
    throw std::length_error("BPE encode: " + std::to_string(utf8.size()) + " bytes of text, more than 1 GiB");
  std::vector<int32_t> ids;
  if (add_special) ids = m.prefix;
  const std::string text = bpe::repair_utf8(utf8);
  const auto push = [&](int32_t id) { ids.push_back(id); };
  m.raw_added.split(
      text,
      [&](std::string_view piece) {
        const std::string normalized = m.nfc ? bpe::nfc_utf8(std::string(piece)) : std::string(piece);
        m.normalized_added.split(normalized, [&](std::string_view p) { m.pre_tokenize(p, &ids); }, push);
      },
      push);
  if (add_special) ids.insert(ids.end(), m.suffix.begin(), m.suffix.end());
  return ids;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (const int32_t id : ids) {
    if (id < 0 || std::size_t(id) >= impl_->tokens.size()) continue;
    const std::string& t = impl_->tokens[std::size_t(id)];
    if (impl_->is_added[std::size_t(id)]) {
      out += t;
      continue;
    }
    for (std::size_t i = 0; i < t.size();) {
      const auto ch = decode_utf8(t, i);
      const std::size_t len = ch.length ? ch.length : 1;
      const int byte = ch.length ? bpe::char_byte(ch.code_point) : -1;
      if (byte >= 0) out += char(byte);
      else out.append(t, i, len);
      i += len;
    }
  }
  return out;
}

std::size_t BpeTokenizer::vocab_size() const { return impl_->tokens.size(); }
int32_t BpeTokenizer::bos_id() const { return impl_->bos; }
int32_t BpeTokenizer::eos_id() const { return impl_->eos; }

std::string BpeTokenizer::token(int32_t id) const {
  if (id < 0 || std::size_t(id) >= impl_->tokens.size())
    throw std::out_of_range("token id " + std::to_string(id) + " is outside [0, " +
                            std::to_string(impl_->tokens.size()) + ")");
  return impl_->tokens[std::size_t(id)];
}

int32_t BpeTokenizer::token_id(const std::string& token) const {
  if (const auto a = impl_->added.find(token); a != impl_->added.end()) return a->second;
  const auto it = impl_->vocab.find(token);
  return it == impl_->vocab.end() ? -1 : it->second;
}

std::string BpeTokenizer::describe() const {
  const Impl& m = *impl_;
  std::string s = m.nfc ? "NFC; " : "";
  for (std::size_t i = 0; i < m.stages.size(); ++i) {
    const auto& st = m.stages[i];
    s += i ? ", " : "";
    if (st.kind == Stage::kSplit) s += std::string("Split(") + bpe::regex_name(st.regex) + ")";
    else if (st.kind == Stage::kDigits) s += std::string("Digits(individual=") + (st.flag ? "1" : "0") + ")";
    else s += std::string("ByteLevel(prefix_space=") + (st.flag ? "1" : "0") + ", regex=" + (st.use_regex ? "1" : "0") + ")";
  }
  s += std::string("; BPE") + (m.ignore_merges ? " ignore_merges" : "") + "; special prefix [" + join(m.prefix) +
       "] suffix [" + join(m.suffix) + "]";
  return s;
}

}  // namespace nexus::support
