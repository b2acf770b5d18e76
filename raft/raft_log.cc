#include "raft/raft_log.h"

#include <algorithm>
#include <string>

#include "raft/check.h"

namespace quorumkv::raft {

namespace {
std::string Str(Index i) { return std::to_string(i.value()); }
}  // namespace

RaftLog::RaftLog(LogStorage* storage) : storage_(storage) {
  unstable_offset_ = storage_->LastIndex() + 1;
  committed_ = storage_->snapshot_meta().index;
  applied_ = committed_;
}

void RaftLog::RecordError(const absl::Status& status) const {
  if (error_.ok()) error_ = status;
}

Index RaftLog::FirstIndex() const {
  if (unstable_snapshot_) return unstable_snapshot_->meta.index + 1;
  return storage_->FirstIndex();
}

Index RaftLog::LastIndex() const {
  if (!unstable_.empty()) return unstable_offset_ + (unstable_.size() - 1);
  if (unstable_snapshot_) return unstable_snapshot_->meta.index;
  return std::min(storage_->LastIndex(), unstable_offset_ - 1);
}

Term RaftLog::LastTerm() const { return TermAt(LastIndex()).value_or(Term(0)); }

std::optional<Term> RaftLog::TermAt(Index i) const {
  if (unstable_snapshot_) {
    if (i == unstable_snapshot_->meta.index) return unstable_snapshot_->meta.term;
    if (i < unstable_snapshot_->meta.index) return std::nullopt;
  }
  if (i >= unstable_offset_) {
    if (i - unstable_offset_ < unstable_.size()) return unstable_[i - unstable_offset_].term;
    return std::nullopt;
  }
  if (unstable_snapshot_) return std::nullopt;
  if (i > storage_->LastIndex() || i + 1 < storage_->FirstIndex()) return std::nullopt;
  auto term = storage_->TermAt(i);
  if (!term.ok()) {
    if (term.status().code() != absl::StatusCode::kOutOfRange) RecordError(term.status());
    return std::nullopt;
  }
  return *term;
}

bool RaftLog::MatchTerm(Index i, Term t) const {
  auto term = TermAt(i);
  return term.has_value() && *term == t;
}

bool RaftLog::IsUpToDate(Index last_index, Term last_term) const {
  Term my_last_term = LastTerm();
  return last_term > my_last_term || (last_term == my_last_term && last_index >= LastIndex());
}

std::optional<Index> RaftLog::FindConflict(const std::vector<Entry>& entries) const {
  for (const Entry& e : entries) {
    if (!MatchTerm(e.index, e.term)) return e.index;
  }
  return std::nullopt;
}

std::optional<Index> RaftLog::MaybeAppend(Index prev_index, Term prev_term, Index leader_commit,
                                          const std::vector<Entry>& entries,
                                          std::optional<Index>* truncated_from) {
  if (!MatchTerm(prev_index, prev_term)) return std::nullopt;
  Index last_new = prev_index + entries.size();
  if (auto conflict = FindConflict(entries)) {
    // Figure 2, receiver rule 3: truncate only at a real conflict. A
    // committed entry can never conflict with a current leader's log
    // (Leader Completeness); if it does, something upstream is broken.
    QKV_CHECK(*conflict > committed_, "truncating committed entry " + Str(*conflict) +
                                          " (committed " + Str(committed_) + ")");
    if (truncated_from != nullptr && *conflict <= LastIndex()) *truncated_from = *conflict;
    TruncateAndAppend(entries, *conflict - (prev_index + 1));
  }
  CommitTo(std::min(leader_commit, last_new));
  return last_new;
}

Index RaftLog::Append(std::vector<Entry> entries) {
  if (entries.empty()) return LastIndex();
  QKV_CHECK(entries.front().index == LastIndex() + 1, "leader append leaves a gap");
  if (unstable_.empty()) unstable_offset_ = entries.front().index;
  for (Entry& e : entries) unstable_.push_back(std::move(e));
  return LastIndex();
}

void RaftLog::TruncateAndAppend(const std::vector<Entry>& entries, size_t from) {
  Index first = entries[from].index;
  if (first == unstable_offset_ + unstable_.size()) {
    // Directly after the unstable tail.
  } else if (first <= unstable_offset_) {
    // Replaces (part of) the durable log too; Persist overwrites that suffix.
    unstable_.clear();
    unstable_offset_ = first;
  } else {
    unstable_.resize(first - unstable_offset_);
  }
  if (unstable_.empty()) unstable_offset_ = first;
  unstable_.insert(unstable_.end(), entries.begin() + from, entries.end());
}

std::vector<Entry> RaftLog::Slice(Index lo, Index hi, uint64_t max_bytes) const {
  std::vector<Entry> out;
  if (lo >= hi) return out;
  QKV_CHECK(lo >= FirstIndex() && hi <= LastIndex() + 1,
            "slice [" + Str(lo) + "," + Str(hi) + ") outside the log");
  uint64_t bytes = 0;
  if (lo < unstable_offset_) {
    Index storage_hi = std::min(hi, unstable_offset_);
    auto stored = storage_->Entries(lo, storage_hi, max_bytes);
    if (!stored.ok()) {
      RecordError(stored.status());
      return out;
    }
    for (Entry& e : *stored) bytes += e.ByteSize();
    out = std::move(*stored);
    if (out.empty() || out.back().index + 1 < storage_hi) return out;  // cut by max_bytes
  }
  for (Index i = std::max(lo, unstable_offset_); i < hi; ++i) {
    const Entry& e = unstable_[i - unstable_offset_];
    bytes += e.ByteSize();
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

Index RaftLog::FirstIndexOfTermAtOrBelow(Index index, Term term) const {
  Index floor = std::max(committed_ + 1, FirstIndex());
  Index i = index;
  while (i > floor) {
    auto t = TermAt(i - 1);
    if (!t || *t != term) break;
    i = i - 1;
  }
  return i;
}

std::optional<Index> RaftLog::LastIndexOfTerm(Term term) const {
  for (Index i = LastIndex(); i + 1 >= FirstIndex() && i > Index(0); i = i - 1) {
    auto t = TermAt(i);
    if (!t || *t < term) return std::nullopt;
    if (*t == term) return i;
  }
  return std::nullopt;
}

void RaftLog::CommitTo(Index index) {
  if (index <= committed_) return;
  QKV_CHECK(index <= LastIndex(), "commit " + Str(index) + " beyond last index " + Str(LastIndex()));
  committed_ = index;
}

bool RaftLog::MaybeCommit(Index index, Term term) {
  if (index > committed_ && MatchTerm(index, term)) {
    CommitTo(index);
    return true;
  }
  return false;
}

void RaftLog::AppliedTo(Index index) {
  if (index <= applied_) return;
  QKV_CHECK(index <= committed_, "applied " + Str(index) + " beyond commit " + Str(committed_));
  applied_ = index;
}

void RaftLog::SetInitialPositions(Index committed, Index applied) {
  committed_ = std::max(committed_, std::min(committed, LastIndex()));
  applied_ = std::max(applied_, std::min(applied, committed_));
}

void RaftLog::StableTo(Index index, Term term) {
  if (index < unstable_offset_) return;
  if (index - unstable_offset_ >= unstable_.size()) return;
  if (unstable_[index - unstable_offset_].term != term) return;  // replaced meanwhile
  unstable_.erase(unstable_.begin(), unstable_.begin() + (index - unstable_offset_ + 1));
  unstable_offset_ = index + 1;
}

void RaftLog::StableSnapshotTo(Index index) {
  if (unstable_snapshot_ && unstable_snapshot_->meta.index == index) unstable_snapshot_.reset();
}

Index RaftLog::StableLastIndex() const {
  if (unstable_snapshot_) return Index(0);
  return std::min(storage_->LastIndex(), unstable_offset_ - 1);
}

bool RaftLog::HasNextCommittedEntries() const {
  Index lo = std::max(applied_ + 1, FirstIndex());
  return committed_ >= lo;
}

std::vector<Entry> RaftLog::NextCommittedEntries(uint64_t max_bytes) const {
  Index lo = std::max(applied_ + 1, FirstIndex());
  if (committed_ < lo) return {};
  return Slice(lo, committed_ + 1, max_bytes);
}

void RaftLog::Restore(const Snapshot& snapshot) {
  QKV_CHECK(snapshot.meta.index > committed_, "restoring a snapshot at or below commit");
  committed_ = snapshot.meta.index;
  unstable_.clear();
  unstable_offset_ = snapshot.meta.index + 1;
  unstable_snapshot_ = snapshot;
}

SnapshotMeta RaftLog::SnapshotToSend() const {
  if (unstable_snapshot_) return unstable_snapshot_->meta;
  return storage_->snapshot_meta();
}

}  // namespace quorumkv::raft
