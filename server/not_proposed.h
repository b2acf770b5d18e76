// Marks a refusal given before anything was proposed (not the leader, the
// node failed, too many pending requests...). The client API turns the mark
// into the trailer "quorumkv-not-proposed" and the peer transport carries it
// across a forwarding hop, so a client knows a retry cannot apply the
// request twice. A status without it is indeterminate.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/cord.h"

namespace quorumkv::server {

inline constexpr char kNotProposedPayload[] = "quorumkv/not-proposed";

inline absl::Status NotProposed(absl::Status s) {
  if (!s.ok()) s.SetPayload(kNotProposedPayload, absl::Cord("1"));
  return s;
}

inline bool IsNotProposed(const absl::Status& s) { return s.GetPayload(kNotProposedPayload).has_value(); }

}  // namespace quorumkv::server
