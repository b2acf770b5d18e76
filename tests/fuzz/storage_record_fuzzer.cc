// libFuzzer target: every decoder of bytes that come back from disk or from
// a peer, outside the Raft core.
//
//   raft/storage/format.h  entry run, entry, hard state, snapshot meta, metadata records
//                          and entry keys of the LevelDB Raft log
//   kv/command.h           DecodeCommand, DecodeCommandResult
//   kv/snapshot_format.h   SnapshotImageParser, fed in arbitrary pieces
//   server/member_list.h   MemberList::Decode, DecodeMemberContext
//   raft/types.h           ConfChange::Decode (and ApplyConfChange)
//
// The first input byte picks the decoder; the rest is its input. Besides
// "never crashes, never reads out of bounds" (ASan, UBSan), each decoder is
// held to what its header promises:
//   - a failure is the documented status code with a non-empty message;
//   - a canonical encoding round-trips: Encode(Decode(b)) == b whenever
//     Decode(b) succeeds (format records, commands, results, ConfChange);
//     the text formats (member list) at least decode to the same value
//     again: Decode(Encode(Decode(b))) == Decode(b);
//   - the snapshot parser gives the same outcome (records, completeness,
//     status) whether the image arrives in one piece or in arbitrary pieces,
//     and accepts exactly the records of an image built with the Append*
//     functions.
// CRC-framed records are also fuzzed with a correct CRC prepended to the
// fuzz bytes ("framed" variants), or random bytes would almost never get
// past the checksum to the field parsing behind it.
//
// A violated property prints what was wrong and calls __builtin_trap(), so
// libFuzzer records the input as a crash.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "kv/checksum.h"
#include "kv/coding.h"
#include "kv/command.h"
#include "kv/snapshot_format.h"
#include "raft/storage/crc32c.h"
#include "raft/storage/format.h"
#include "raft/types.h"
#include "server/member_list.h"

namespace quorumkv::fuzz {
namespace {

namespace storage = ::quorumkv::raft::storage;

#define FUZZ_CHECK(cond, ...)                                          \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::fprintf(stderr, "storage_record_fuzzer: %s:%d: check failed: %s: ", __FILE__, \
                   __LINE__, #cond);                                   \
      std::fprintf(stderr, __VA_ARGS__);                               \
      std::fprintf(stderr, "\n");                                      \
      __builtin_trap();                                                \
    }                                                                  \
  } while (0)

std::string Frame(absl::string_view body) {
  std::string out;
  const uint32_t crc = storage::Crc32c(body);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((crc >> (8 * i)) & 0xff));
  out.append(body.data(), body.size());
  return out;
}

void CheckFailure(const absl::Status& s, absl::StatusCode want, const char* what) {
  FUZZ_CHECK(s.code() == want, "%s failed with %s, documented code is %s", what,
             s.ToString().c_str(), absl::StatusCodeToString(want).c_str());
  FUZZ_CHECK(!s.message().empty(), "%s failed without a message", what);
}

// --- raft/storage/format.h -------------------------------------------------

// The value of an entry key: a run of entries, or (format version 1, read
// to convert it) a single entry. Both decoders get every input.
void FuzzEntryRun(const std::string& value) {
  auto run = storage::DecodeEntryRun(value);
  if (!run.ok()) return CheckFailure(run.status(), absl::StatusCode::kDataLoss, "DecodeEntryRun");
  FUZZ_CHECK(!run->empty(), "DecodeEntryRun accepted a run without entries");
  for (size_t k = 0; k < run->size(); ++k) {
    const raft::Entry& e = (*run)[k];
    FUZZ_CHECK(static_cast<uint8_t>(e.type) <= static_cast<uint8_t>(raft::EntryType::kConfChange),
               "DecodeEntryRun accepted entry type %d", static_cast<int>(e.type));
    FUZZ_CHECK(e.index.value() != 0 && e.index == run->front().index + k,
               "DecodeEntryRun gave entry %zu index %llu", k, static_cast<unsigned long long>(e.index.value()));
  }
  FUZZ_CHECK(storage::EncodeEntryRun(*run) == value, "EncodeEntryRun(DecodeEntryRun(b)) != b");
}

void FuzzEntry(const std::string& value) {
  FuzzEntryRun(value);
  auto e = storage::DecodeEntry(value);
  if (!e.ok()) return CheckFailure(e.status(), absl::StatusCode::kDataLoss, "DecodeEntry");
  FUZZ_CHECK(static_cast<uint8_t>(e->type) <= static_cast<uint8_t>(raft::EntryType::kConfChange),
             "DecodeEntry accepted entry type %d", static_cast<int>(e->type));
  FUZZ_CHECK(storage::EncodeEntry(*e) == value, "EncodeEntry(DecodeEntry(b)) != b");
}

void FuzzHardState(const std::string& value) {
  auto hs = storage::DecodeHardState(value);
  if (!hs.ok()) return CheckFailure(hs.status(), absl::StatusCode::kDataLoss, "DecodeHardState");
  FUZZ_CHECK(storage::EncodeHardState(*hs) == value, "EncodeHardState(DecodeHardState(b)) != b");
}

void FuzzSnapshotMeta(const std::string& value) {
  auto meta = storage::DecodeSnapshotMeta(value);
  if (!meta.ok()) {
    return CheckFailure(meta.status(), absl::StatusCode::kDataLoss, "DecodeSnapshotMeta");
  }
  FUZZ_CHECK(storage::EncodeSnapshotMeta(*meta) == value,
             "EncodeSnapshotMeta(DecodeSnapshotMeta(b)) != b");
}

void FuzzMetadata(const std::string& value) {
  auto m = storage::DecodeMetadata(value);
  if (!m.ok()) {
    // An unknown format version is refused as FAILED_PRECONDITION (the
    // directory is intact, just not ours to read); everything else is loss.
    const absl::StatusCode want = m.status().code() == absl::StatusCode::kFailedPrecondition
                                      ? absl::StatusCode::kFailedPrecondition
                                      : absl::StatusCode::kDataLoss;
    return CheckFailure(m.status(), want, "DecodeMetadata");
  }
  FUZZ_CHECK(m->format_version == storage::kFormatVersion ||
                 m->format_version == storage::kOneEntryPerKeyFormatVersion,
             "DecodeMetadata accepted version %u", m->format_version);
  FUZZ_CHECK(storage::EncodeMetadata(*m) == value, "EncodeMetadata(DecodeMetadata(b)) != b");
}

void FuzzEntryKey(const std::string& key) {
  std::optional<raft::Index> index = storage::ParseEntryKey(key);
  if (!index) return;
  FUZZ_CHECK(storage::EntryKey(*index) == key, "EntryKey(ParseEntryKey(k)) != k");
}

// --- kv/command.h ---------------------------------------------------------

void FuzzCommand(const std::string& bytes) {
  auto c = kv::DecodeCommand(bytes);
  if (!c.ok()) return CheckFailure(c.status(), absl::StatusCode::kInvalidArgument, "DecodeCommand");
  FUZZ_CHECK(kv::EncodeCommand(*c) == bytes, "EncodeCommand(DecodeCommand(b)) != b (%zu bytes)",
             bytes.size());
}

void FuzzCommandResult(const std::string& bytes) {
  auto r = kv::DecodeCommandResult(bytes);
  if (!r.ok()) {
    return CheckFailure(r.status(), absl::StatusCode::kInvalidArgument, "DecodeCommandResult");
  }
  FUZZ_CHECK(kv::EncodeCommandResult(*r) == bytes, "EncodeCommandResult(DecodeCommandResult(b)) != b");
}

// --- kv/snapshot_format.h -------------------------------------------------

struct ParseOutcome {
  absl::Status status;  // the first non-OK Feed, else OK
  bool header_parsed = false;
  bool complete = false;
  kv::SnapshotHeader header;
  std::vector<std::pair<std::string, std::string>> records;
};

// Feeds `image` cut at `cuts` (ascending offsets), to a header sink that
// refuses every header if `header_refuses`.
ParseOutcome Parse(const std::string& image, const std::vector<size_t>& cuts, uint64_t max_field_bytes,
                   bool header_refuses) {
  ParseOutcome out;
  int header_calls = 0;
  kv::SnapshotImageParser parser(
      max_field_bytes,
      [&](const kv::SnapshotHeader& h) {
        ++header_calls;
        out.header = h;
        return header_refuses ? absl::FailedPreconditionError("refused by the header sink")
                              : absl::OkStatus();
      },
      [&](absl::string_view key, absl::string_view value) {
        FUZZ_CHECK(!key.empty(), "record sink got an empty key");
        FUZZ_CHECK(key.size() <= max_field_bytes && value.size() <= max_field_bytes,
                   "record sink got a field over the limit");
        if (!out.records.empty()) {
          FUZZ_CHECK(absl::string_view(out.records.back().first) < key, "records out of key order");
        }
        out.records.emplace_back(std::string(key), std::string(value));
        return absl::OkStatus();
      });
  size_t at = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(image.size());
  for (size_t end : ends) {
    if (end < at || end > image.size()) continue;
    absl::Status s = parser.Feed(absl::string_view(image).substr(at, end - at));
    at = end;
    if (!s.ok()) {
      out.status = s;
      // A failed parser refuses all further input with the same status.
      absl::Status again = parser.Feed("x");
      FUZZ_CHECK(again == s, "after failing with %s the parser returned %s", s.ToString().c_str(),
                 again.ToString().c_str());
      break;
    }
  }
  FUZZ_CHECK(header_calls <= 1, "header sink called %d times", header_calls);
  out.header_parsed = parser.header_parsed();
  out.complete = parser.complete();
  FUZZ_CHECK(parser.record_count() == out.records.size(), "record_count %llu, sink saw %zu",
             static_cast<unsigned long long>(parser.record_count()), out.records.size());
  if (out.complete) {
    FUZZ_CHECK(out.status.ok(), "complete and failed");
    FUZZ_CHECK(parser.bytes_consumed() == image.size(), "complete after %llu of %zu bytes",
               static_cast<unsigned long long>(parser.bytes_consumed()), image.size());
  }
  if (!out.status.ok()) {
    // The sink's own refusal comes back as it is; every parse error is
    // DATA_LOSS.
    const bool sink_refusal = header_refuses && header_calls == 1 && out.records.empty() &&
                              out.status.message() == "refused by the header sink";
    CheckFailure(out.status, sink_refusal ? absl::StatusCode::kFailedPrecondition : absl::StatusCode::kDataLoss,
                 "SnapshotImageParser::Feed");
  }
  return out;
}

void CompareOutcomes(const ParseOutcome& whole, const ParseOutcome& pieces) {
  // Same code, same message; except that "N bytes after its end" counts
  // the excess bytes received so far, which depends on the cuts.
  const bool excess = absl::StrContains(whole.status.message(), "after its end");
  FUZZ_CHECK(excess ? whole.status.code() == pieces.status.code() : whole.status == pieces.status,
             "one piece: %s; in pieces: %s", whole.status.ToString().c_str(), pieces.status.ToString().c_str());
  FUZZ_CHECK(whole.complete == pieces.complete, "completeness depends on the cuts");
  FUZZ_CHECK(whole.header_parsed == pieces.header_parsed, "header parsing depends on the cuts");
  FUZZ_CHECK(whole.header == pieces.header, "header depends on the cuts");
  // A failure may come after some records were delivered; how many depends
  // only on where the bad bytes are, not on how the image was cut.
  FUZZ_CHECK(whole.records == pieces.records, "records depend on the cuts (%zu vs %zu)",
             whole.records.size(), pieces.records.size());
}

std::vector<size_t> Cuts(FuzzedDataProvider& fdp, size_t size) {
  std::vector<size_t> cuts;
  const size_t n = fdp.ConsumeIntegralInRange<size_t>(0, 16);
  size_t at = 0;
  for (size_t i = 0; i < n && at < size; ++i) {
    at += fdp.ConsumeIntegralInRange<size_t>(0, 80);
    if (at > size) at = size;
    cuts.push_back(at);
  }
  if (fdp.ConsumeBool()) {  // one byte at a time
    cuts.clear();
    for (size_t i = 1; i < size && i < 4096; ++i) cuts.push_back(i);
  }
  return cuts;
}

void FuzzSnapshotRaw(FuzzedDataProvider& fdp) {
  const uint64_t max_field = fdp.ConsumeIntegralInRange<uint64_t>(1, 1 << 20);
  const bool refuse = fdp.ConsumeIntegralInRange<int>(0, 15) == 0;
  const std::string image = fdp.ConsumeRandomLengthString(1 << 16);
  std::vector<size_t> cuts = Cuts(fdp, image.size());
  ParseOutcome whole = Parse(image, {}, max_field, refuse);
  ParseOutcome pieces = Parse(image, cuts, max_field, refuse);
  CompareOutcomes(whole, pieces);
}

// Builds a well-formed image from the input, then maybe damages it; an
// undamaged image must parse to exactly what was put in.
void FuzzSnapshotStructured(FuzzedDataProvider& fdp) {
  kv::SnapshotHeader h;
  h.applied_index = fdp.ConsumeIntegral<uint64_t>();
  h.applied_term = fdp.ConsumeIntegral<uint64_t>();
  h.log_clock_ms = fdp.ConsumeIntegral<uint64_t>();
  h.session_ttl_ms = fdp.ConsumeIntegral<uint64_t>();
  h.key_count = fdp.ConsumeIntegral<uint64_t>();
  h.user_bytes = fdp.ConsumeIntegral<uint64_t>();
  h.session_count = fdp.ConsumeIntegral<uint64_t>();
  const uint64_t max_field = fdp.ConsumeIntegralInRange<uint64_t>(1, 512);
  std::vector<std::pair<std::string, std::string>> records;
  const size_t n = fdp.ConsumeIntegralInRange<size_t>(0, 24);
  std::string last;
  for (size_t i = 0; i < n; ++i) {
    // Keys strictly increasing: extend or bump the previous one.
    std::string key = last + fdp.ConsumeRandomLengthString(12);
    if (key.empty() || (!records.empty() && key <= last)) key = last + "k";
    if (key.size() > max_field) break;
    std::string value = fdp.ConsumeRandomLengthString(64);
    if (value.size() > max_field) value.resize(max_field);
    records.emplace_back(key, value);
    last = key;
  }
  std::string image;
  kv::AppendSnapshotHeader(h, &image);
  for (const auto& [k, v] : records) kv::AppendSnapshotRecord(k, v, &image);
  kv::AppendSnapshotTrailerBody(records.size(), &image);
  kv::coding::PutFixed32(&image, kv::Crc32c(image));

  const size_t damage = fdp.ConsumeIntegralInRange<size_t>(0, 5);
  const std::string original = image;
  switch (damage) {
    case 1:  // flip a byte
      if (!image.empty()) {
        const size_t at = fdp.ConsumeIntegralInRange<size_t>(0, image.size() - 1);
        image[at] = static_cast<char>(image[at] ^ fdp.ConsumeIntegralInRange<uint8_t>(1, 255));
      }
      break;
    case 2:  // truncate
      image.resize(fdp.ConsumeIntegralInRange<size_t>(0, image.size()));
      break;
    case 3: {  // insert one to three bytes
      const size_t at = fdp.ConsumeIntegralInRange<size_t>(0, image.size());
      image.insert(at, std::string(fdp.ConsumeIntegralInRange<size_t>(1, 3),
                                   static_cast<char>(fdp.ConsumeIntegral<uint8_t>())));
      break;
    }
    case 4:  // append garbage after the end
      image += fdp.ConsumeRandomLengthString(16);
      break;
    case 5: {  // rewrite a header byte and fix the header CRC
      const size_t at = fdp.ConsumeIntegralInRange<size_t>(8, 63);
      image[at] = static_cast<char>(fdp.ConsumeIntegral<uint8_t>());
      std::string fixed = image.substr(0, 64);
      kv::coding::PutFixed32(&fixed, kv::Crc32c(fixed));
      image.replace(0, 68, fixed);
      break;
    }
    default:
      break;
  }
  std::vector<size_t> cuts = Cuts(fdp, image.size());
  ParseOutcome whole = Parse(image, {}, max_field, false);
  ParseOutcome pieces = Parse(image, cuts, max_field, false);
  CompareOutcomes(whole, pieces);
  if (image == original) {
    FUZZ_CHECK(whole.status.ok(), "a well-formed image failed: %s", whole.status.ToString().c_str());
    FUZZ_CHECK(whole.complete, "a well-formed image is not complete");
    FUZZ_CHECK(whole.header == h, "header did not round-trip");
    FUZZ_CHECK(whole.records == records, "records did not round-trip (%zu vs %zu)",
               whole.records.size(), records.size());
  } else if (damage == 5) {
    // A header rewritten with a matching header CRC is a valid header: the
    // image CRC cannot tell, because a CRC over "bytes + their own CRC" is
    // the same constant for any bytes (the CRC residue), so the image CRC
    // does not depend on a self-consistent header at all. The records must
    // still come through intact.
    FUZZ_CHECK(whole.status.ok() && whole.complete, "an image with a rewritten, re-checksummed header failed: %s",
               whole.status.ToString().c_str());
    FUZZ_CHECK(whole.records == records, "records did not round-trip under a rewritten header");
  } else {
    // Any other change goes noticed: a flipped or inserted byte by a CRC,
    // a truncation by the missing trailer, garbage after the end by the
    // length check.
    FUZZ_CHECK(!whole.complete, "a damaged image (damage %zu) was accepted as complete", damage);
  }
}

// --- server/member_list.h and raft::ConfChange -----------------------------

void FuzzMemberList(const std::string& bytes) {
  auto list = server::MemberList::Decode(bytes);
  if (!list.ok()) return CheckFailure(list.status(), absl::StatusCode::kDataLoss, "MemberList::Decode");
  for (const auto& [id, m] : list->members()) {
    FUZZ_CHECK(id == m.id && id != 0, "member list keyed wrongly (%llu vs %llu)",
               static_cast<unsigned long long>(id), static_cast<unsigned long long>(m.id));
  }
  const std::string encoded = list->Encode();
  auto again = server::MemberList::Decode(encoded);
  FUZZ_CHECK(again.ok(), "re-encoded member list does not decode: %s", again.status().ToString().c_str());
  FUZZ_CHECK(again->members() == list->members(), "member list changed through Encode/Decode");
  FUZZ_CHECK(again->Encode() == encoded, "member list encoding is not stable");
}

void FuzzMemberContext(const std::string& bytes) {
  std::optional<server::Member> m = server::DecodeMemberContext(bytes);
  if (!m) return;
  FUZZ_CHECK(m->id != 0, "member context decoded with id 0");
  std::optional<server::Member> again = server::DecodeMemberContext(server::EncodeMemberContext(*m));
  FUZZ_CHECK(again.has_value() && *again == *m, "member context changed through Encode/Decode");
}

bool ValidConf(const raft::ConfState& c) {
  auto sorted = [](const std::vector<raft::NodeId>& v) {
    for (size_t i = 1; i < v.size(); ++i) {
      if (!(v[i - 1] < v[i])) return false;
    }
    return true;
  };
  if (!sorted(c.voters) || !sorted(c.learners)) return false;
  for (raft::NodeId v : c.voters) {
    if (c.IsLearner(v)) return false;
  }
  return true;
}

void FuzzConfChange(FuzzedDataProvider& fdp) {
  // A valid starting configuration and member list, then the decoded change.
  raft::ConfState conf;
  server::MemberList members;
  const size_t n = fdp.ConsumeIntegralInRange<size_t>(0, 6);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t id = fdp.ConsumeIntegralInRange<uint64_t>(1, 8);
    raft::ConfChange add{fdp.ConsumeBool() ? raft::ConfChangeType::kAddVoter : raft::ConfChangeType::kAddLearner,
                         raft::NodeId(id), ""};
    conf = raft::ApplyConfChange(conf, add);
    members = members.Apply(add);
  }
  const std::string bytes = fdp.ConsumeRemainingBytesAsString();
  std::optional<raft::ConfChange> cc = raft::ConfChange::Decode(bytes);
  if (!cc) return;
  FUZZ_CHECK(static_cast<uint8_t>(cc->type) <= static_cast<uint8_t>(raft::ConfChangeType::kAddVoter),
             "ConfChange::Decode accepted type %d", static_cast<int>(cc->type));
  FUZZ_CHECK(cc->Encode() == bytes, "ConfChange Encode(Decode(b)) != b");
  raft::ConfState after = raft::ApplyConfChange(conf, *cc);
  FUZZ_CHECK(ValidConf(after), "ApplyConfChange broke the ConfState invariant: %s -> %s",
             conf.ToString().c_str(), after.ToString().c_str());
  server::MemberList list_after = members.Apply(*cc);
  for (const auto& [id, m] : list_after.members()) FUZZ_CHECK(id == m.id, "member list keyed wrongly");
  // The member list and the core agree on who is a member after the change
  // (the server derives peers from one and quorums from the other).
  if (cc->node_id != raft::kNoNode) {
    const bool in_conf = after.Contains(cc->node_id);
    const bool in_list = list_after.Find(cc->node_id.value()) != nullptr;
    FUZZ_CHECK(in_conf == in_list, "after %d on node %llu: in ConfState %d, in member list %d",
               static_cast<int>(cc->type), static_cast<unsigned long long>(cc->node_id.value()), in_conf,
               in_list);
    if (in_conf) {
      FUZZ_CHECK(after.IsVoter(cc->node_id) == list_after.Find(cc->node_id.value())->voter,
                 "voter status differs between ConfState and member list for node %llu",
                 static_cast<unsigned long long>(cc->node_id.value()));
    }
  }
}

}  // namespace
}  // namespace quorumkv::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace quorumkv::fuzz;
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  FuzzedDataProvider fdp(data + 1, size - 1);
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (selector % 16) {
    case 0: FuzzEntry(rest); break;
    case 1: FuzzEntry(Frame(rest)); break;
    case 2: FuzzHardState(rest); break;
    case 3: FuzzHardState(Frame(rest)); break;
    case 4: FuzzSnapshotMeta(rest); break;
    case 5: FuzzSnapshotMeta(Frame(rest)); break;
    case 6: FuzzMetadata(rest); break;
    case 7: FuzzMetadata(Frame(rest)); break;
    case 8: FuzzEntryKey(rest); break;
    case 9: FuzzCommand(rest); break;
    case 10: FuzzCommandResult(rest); break;
    case 11: FuzzSnapshotRaw(fdp); break;
    case 12: FuzzSnapshotStructured(fdp); break;
    case 13: FuzzMemberList(rest); break;
    case 14: FuzzMemberContext(rest); break;
    case 15: FuzzConfChange(fdp); break;
  }
  return 0;
}
