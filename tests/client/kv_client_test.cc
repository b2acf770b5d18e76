// Tests of KvClient against in-process fake nodes (fake_kv_server.h):
// retries and where they go, exactly-once writes across retries, errors that
// are not retried, the time bounds, leader discovery, membership changes
// with an unknown outcome, health checks, option validation, and several
// threads sharing one client.
#include "client/kv_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/client/fake_kv_server.h"

namespace quorumkv::client {
namespace {

namespace v1 = ::quorumkv::v1;
using testing::CallRecord;
using testing::FakeCluster;
using testing::FakeNode;
using testing::Fault;
using ::testing::HasSubstr;
using ::testing::Not;

class KvClientTest : public ::testing::Test {
 protected:
  // Starts nodes 1..n (StartFakeCluster): all voters, node 1 the leader.
  void StartNodes(int n) {
    auto started = testing::StartFakeCluster(n);
    ASSERT_TRUE(started.ok()) << started.status();
    cluster_ = started->cluster;
    nodes_ = std::move(started->nodes);
  }

  FakeNode& node(int id) { return *nodes_[id - 1]; }

  std::vector<std::string> Endpoints(std::vector<int> ids) {
    std::vector<std::string> out;
    for (int id : ids) out.push_back(node(id).endpoint());
    return out;
  }

  // Quick back-off so tests run fast; generous per-attempt deadlines.
  static ClientOptions Options(std::vector<std::string> endpoints) {
    ClientOptions options;
    options.endpoints = std::move(endpoints);
    options.request_timeout = absl::Seconds(5);
    options.total_timeout = absl::Seconds(20);
    options.backoff_min = absl::Milliseconds(5);
    options.backoff_max = absl::Milliseconds(50);
    return options;
  }

  static std::unique_ptr<KvClient> NewClient(ClientOptions options) {
    auto client = KvClient::Create(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  int TotalCalls(const std::string& method) {
    int total = 0;
    for (const auto& n : nodes_) total += n->CallCount(method);
    return total;
  }

  std::shared_ptr<FakeCluster> cluster_;
  std::vector<std::unique_ptr<FakeNode>> nodes_;
};

TEST_F(KvClientTest, CreateValidatesOptions) {
  auto create = [](std::vector<std::string> endpoints) {
    ClientOptions options;
    options.endpoints = std::move(endpoints);
    return KvClient::Create(options).status();
  };
  EXPECT_EQ(create({}).code(), absl::StatusCode::kInvalidArgument);
  for (const char* bad : {"nohost", "host:", ":2379", "host:0", "host:65536", "host:12a",
                          "host:123456", "::1:2379", "[::1]2379", "[]:2379", "a b:1", ""}) {
    const absl::Status status = create({bad});
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(status.message()), HasSubstr("bad endpoint")) << bad;
  }
  EXPECT_THAT(std::string(create({"127.0.0.1:1", "127.0.0.1:1"}).message()),
              HasSubstr("listed twice"));
  EXPECT_TRUE(create({"127.0.0.1:2379", "[::1]:2379", "localhost:65535"}).ok());

  ClientOptions options;
  options.endpoints = {"127.0.0.1:2379"};
  auto with = [&](auto mutate) {
    ClientOptions o = options;
    mutate(o);
    return KvClient::Create(o).status().code();
  };
  EXPECT_EQ(with([](ClientOptions& o) { o.max_attempts = 0; }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](ClientOptions& o) { o.request_timeout = absl::ZeroDuration(); }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](ClientOptions& o) { o.total_timeout = -absl::Seconds(1); }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](ClientOptions& o) { o.backoff_min = absl::ZeroDuration(); }),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](ClientOptions& o) {
              o.backoff_min = absl::Seconds(2);
              o.backoff_max = absl::Seconds(1);
            }),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KvClientTest, ClientIdIsRandomNonZeroUnlessGiven) {
  ClientOptions options;
  options.endpoints = {"127.0.0.1:2379"};
  auto a = NewClient(options);
  auto b = NewClient(options);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->client_id(), 0u);
  EXPECT_NE(a->client_id(), b->client_id());
  options.client_id = 77;
  EXPECT_EQ(NewClient(options)->client_id(), 77u);
}

TEST_F(KvClientTest, PutGetDeleteReadIndex) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(1));
  ClientOptions options = Options(Endpoints({1}));
  options.client_id = 77;
  auto client = NewClient(options);
  ASSERT_TRUE(client);

  ASSERT_TRUE(client->Put("k", "v1").ok());
  auto value = client->Get("k");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, std::optional<std::string>("v1"));
  ASSERT_TRUE(client->Put("k", std::string("a\0b", 3)).ok());
  EXPECT_EQ(*client->Get("k", v1::SERIALIZABLE), std::optional<std::string>(std::string("a\0b", 3)));

  auto missing = client->Get("nope");
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_FALSE(missing->has_value());

  auto deleted = client->Delete("k");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(*deleted);
  deleted = client->Delete("k");
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(*deleted);
  EXPECT_FALSE(cluster_->Value("k").has_value());

  auto index = client->ReadIndex();
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(*index, 4u);  // four writes applied

  // Each logical write has its own sequence under the configured client id;
  // reads carry the consistency level asked for.
  std::vector<uint64_t> sequences;
  std::vector<v1::Consistency> levels;
  for (const CallRecord& call : node(1).calls()) {
    if (call.method == "Put" || call.method == "Delete") {
      EXPECT_EQ(call.client_id, 77u);
      sequences.push_back(call.sequence);
    }
    if (call.method == "Get") levels.push_back(call.consistency);
  }
  EXPECT_EQ(sequences, (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(levels, (std::vector<v1::Consistency>{v1::LINEARIZABLE, v1::SERIALIZABLE,
                                                  v1::LINEARIZABLE}));
}

TEST_F(KvClientTest, UnknownConsistencyIsRefusedWithoutACall) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(1));
  auto client = NewClient(Options(Endpoints({1})));
  auto result = client->Get("k", static_cast<v1::Consistency>(42));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(node(1).CallCount("Get"), 0);
}

TEST_F(KvClientTest, ConnectionFailureMovesToAnotherEndpoint) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  node(1).Stop();
  auto client = NewClient(Options(Endpoints({1, 2})));
  ASSERT_TRUE(client->Put("k", "v").ok());
  EXPECT_EQ(node(2).CallCount("Put"), 1);
  // The next call starts where the last answer came from.
  ASSERT_TRUE(client->Get("k").ok());
  EXPECT_EQ(node(2).CallCount("Get"), 1);
  EXPECT_EQ(cluster_->applied_writes(), 1);
}

TEST_F(KvClientTest, UnavailableMovesToAnotherEndpoint) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  node(1).AddFault(Fault{.method = "Get", .code = absl::StatusCode::kUnavailable});
  cluster_->SetValue("k", "v");
  auto client = NewClient(Options(Endpoints({1, 2})));
  auto value = client->Get("k");
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, std::optional<std::string>("v"));
  EXPECT_EQ(node(1).CallCount("Get"), 1);
  EXPECT_EQ(node(2).CallCount("Get"), 1);
}

// A put applied by the first node whose reply never comes (the attempt
// times out) is resent to another node with the same (client_id,
// sequence): the cluster applies it once.
TEST_F(KvClientTest, WriteRetriedAfterTimeoutKeepsItsSequenceAndAppliesOnce) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  node(1).AddFault(Fault{.method = "Put", .apply_first = true, .delay = absl::Seconds(10)});
  ClientOptions options = Options(Endpoints({1, 2}));
  options.request_timeout = absl::Milliseconds(300);
  auto client = NewClient(options);
  const absl::Time start = absl::Now();
  ASSERT_TRUE(client->Put("k", "v").ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));

  const std::vector<CallRecord> first = node(1).calls();
  const std::vector<CallRecord> second = node(2).calls();
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(first[0].client_id, second[0].client_id);
  EXPECT_EQ(first[0].sequence, second[0].sequence);
  EXPECT_EQ(first[0].client_id, client->client_id());
  EXPECT_EQ(cluster_->ApplyCount(first[0].client_id, first[0].sequence), 1);
  EXPECT_EQ(cluster_->applied_writes(), 1);
  EXPECT_EQ(cluster_->Value("k"), std::optional<std::string>("v"));

  // The next logical write takes the next sequence.
  ASSERT_TRUE(client->Put("k", "w").ok());
  const std::vector<CallRecord> after = node(2).calls();
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[1].sequence, first[0].sequence + 1);
  EXPECT_EQ(cluster_->applied_writes(), 2);
}

// The server itself answers DEADLINE_EXCEEDED after applying a delete: the
// retry gets the stored first result (the key existed), which only a retry
// with the same (client_id, sequence) can get.
TEST_F(KvClientTest, DeleteRetriedAfterServerTimeoutReturnsTheFirstResult) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(1));
  cluster_->SetValue("k", "v");
  node(1).AddFault(Fault{.method = "Delete",
                         .code = absl::StatusCode::kDeadlineExceeded,
                         .message = "proposal timed out",
                         .apply_first = true});
  auto client = NewClient(Options(Endpoints({1})));
  auto deleted = client->Delete("k");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(*deleted);
  const std::vector<CallRecord> calls = node(1).calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].sequence, calls[1].sequence);
  EXPECT_EQ(calls[0].client_id, calls[1].client_id);
  EXPECT_EQ(cluster_->applied_writes(), 1);
}

TEST_F(KvClientTest, NonRetryableErrorsReturnAtOnceWithTheServersMessage) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  auto client = NewClient(Options(Endpoints({1, 2})));
  const absl::StatusCode codes[] = {
      absl::StatusCode::kInvalidArgument,    absl::StatusCode::kNotFound,
      absl::StatusCode::kAlreadyExists,      absl::StatusCode::kFailedPrecondition,
      absl::StatusCode::kDataLoss,           absl::StatusCode::kAborted,
      absl::StatusCode::kPermissionDenied,   absl::StatusCode::kUnimplemented,
  };
  int expected_calls = 0;
  for (absl::StatusCode code : codes) {
    const std::string message = absl::StrCat("scripted ", absl::StatusCodeToString(code));
    node(1).AddFault(Fault{.method = "Put", .code = code, .message = message});
    const absl::Status status = client->Put("k", "v");
    ++expected_calls;
    EXPECT_EQ(status.code(), code);
    EXPECT_EQ(status.message(), absl::StrCat(node(1).endpoint(), ": ", message));
    EXPECT_EQ(node(1).CallCount("Put"), expected_calls) << message;
    EXPECT_EQ(node(2).CallCount("Put"), 0) << message;
  }
  EXPECT_EQ(cluster_->applied_writes(), 0);

  // The server's own refusal of a bad request.
  auto empty = client->Get("");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("empty key"));
  EXPECT_EQ(TotalCalls("Get"), 1);
}

TEST_F(KvClientTest, ResourceExhaustedBacksOffOnTheSameEndpoint) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  node(1).AddFault(Fault{.method = "Put",
                         .code = absl::StatusCode::kResourceExhausted,
                         .message = "too many pending proposals",
                         .times = 2});
  ClientOptions options = Options(Endpoints({1, 2}));
  options.backoff_min = absl::Milliseconds(40);
  options.backoff_max = absl::Seconds(1);
  auto client = NewClient(options);
  const absl::Time start = absl::Now();
  ASSERT_TRUE(client->Put("k", "v").ok());
  // Two pauses: at least half of 40 ms and half of 80 ms (jitter).
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(60));
  EXPECT_EQ(node(1).CallCount("Put"), 3);
  EXPECT_EQ(node(2).CallCount("Put"), 0);
  EXPECT_EQ(cluster_->applied_writes(), 1);
}

// gRPC itself refuses a request above the server's message size limit (4 MiB
// by default) with RESOURCE_EXHAUSTED: that is not back-pressure, and
// retrying cannot help.
TEST_F(KvClientTest, MessageTooLargeIsNotRetried) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(1));
  auto client = NewClient(Options(Endpoints({1})));
  const absl::Status status = client->Put("big", std::string(5 << 20, 'x'));
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(status.message()), HasSubstr("larger than max"));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("gave up")));
  EXPECT_EQ(cluster_->applied_writes(), 0);
}

TEST_F(KvClientTest, MaxAttemptsBoundsRetries) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(3));
  for (int id = 1; id <= 3; ++id) {
    node(id).AddFault(Fault{.code = absl::StatusCode::kUnavailable, .message = "no leader",
                            .times = -1});
  }
  ClientOptions options = Options(Endpoints({1, 2, 3}));
  options.max_attempts = 4;
  auto client = NewClient(options);
  const absl::Status status = client->Put("k", "v");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(status.message()), HasSubstr("no leader"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("gave up after 4 attempts"));
  // Round robin: 1, 2, 3, 1.
  EXPECT_EQ(node(1).CallCount("Put"), 2);
  EXPECT_EQ(node(2).CallCount("Put"), 1);
  EXPECT_EQ(node(3).CallCount("Put"), 1);
}

TEST_F(KvClientTest, TotalTimeoutBoundsRetriesOfUnavailable) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  for (int id = 1; id <= 2; ++id) {
    node(id).AddFault(Fault{.code = absl::StatusCode::kUnavailable, .times = -1});
  }
  ClientOptions options = Options(Endpoints({1, 2}));
  options.max_attempts = 1000000;
  options.total_timeout = absl::Milliseconds(600);
  auto client = NewClient(options);
  const absl::Time start = absl::Now();
  const absl::Status status = client->Put("k", "v");
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(status.message()), HasSubstr("total timeout"));
  EXPECT_GE(elapsed, absl::Milliseconds(500));
  EXPECT_LT(elapsed, absl::Seconds(2));
  EXPECT_GT(TotalCalls("Put"), 4);
}

TEST_F(KvClientTest, TotalTimeoutBoundsAHungCluster) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  for (int id = 1; id <= 2; ++id) {
    node(id).AddFault(Fault{.delay = absl::Seconds(30), .times = -1});
  }
  ClientOptions options = Options(Endpoints({1, 2}));
  options.request_timeout = absl::Seconds(10);  // longer than the whole call
  options.total_timeout = absl::Milliseconds(500);
  auto client = NewClient(options);
  const absl::Time start = absl::Now();
  const absl::Status status = client->Put("k", "v");
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(status.message()), HasSubstr(node(1).endpoint()));
  EXPECT_GE(elapsed, absl::Milliseconds(450));
  EXPECT_LT(elapsed, absl::Seconds(3));
}

TEST_F(KvClientTest, LeaderTrailerIsFollowedAndRemembered) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(3));
  cluster_->SetLeader(3);
  cluster_->SetFollowersRedirect(true, /*with_address=*/false);
  auto client = NewClient(Options(Endpoints({1, 2, 3})));
  EXPECT_EQ(client->known_leader_id(), 0u);
  // Node 1 names leader 3 but not where it is: the client goes round.
  ASSERT_TRUE(client->Put("a", "1").ok());
  EXPECT_EQ(client->known_leader_id(), 3u);
  EXPECT_EQ(node(1).CallCount("Put"), 1);
  EXPECT_EQ(node(2).CallCount("Put"), 1);
  EXPECT_EQ(node(3).CallCount("Put"), 1);
  // Now it knows node 3 answers on the third endpoint: straight there.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client->Put("a", absl::StrCat(i)).ok());
  ASSERT_TRUE(client->RemoveMember(2).ok());
  EXPECT_EQ(node(1).CallCount("Put"), 1);
  EXPECT_EQ(node(2).CallCount("Put"), 1);
  EXPECT_EQ(node(3).CallCount("Put"), 6);
  EXPECT_EQ(node(3).CallCount("RemoveMember"), 1);
  EXPECT_EQ(TotalCalls("RemoveMember"), 1);
}

TEST_F(KvClientTest, LeaderAddressTrailerRedirectsToAnUnlistedLeader) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(3));
  cluster_->SetLeader(3);
  cluster_->SetFollowersRedirect(true, /*with_address=*/true);
  // The client knows nodes 1 and 2 only; node 1 tells it where 3 is.
  auto client = NewClient(Options(Endpoints({1, 2})));
  ASSERT_TRUE(client->Put("a", "1").ok());
  EXPECT_EQ(node(1).CallCount("Put"), 1);
  EXPECT_EQ(node(2).CallCount("Put"), 0);
  EXPECT_EQ(node(3).CallCount("Put"), 1);
  ASSERT_TRUE(client->Put("a", "2").ok());
  EXPECT_EQ(node(3).CallCount("Put"), 2);
  EXPECT_EQ(client->known_leader_id(), 3u);
}

TEST_F(KvClientTest, StatusTeachesTheLeader) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(3));
  cluster_->SetLeader(2);
  cluster_->SetFollowersRedirect(true, /*with_address=*/false);
  auto client = NewClient(Options(Endpoints({1, 2, 3})));
  auto status = client->Status(node(1).endpoint());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->node_id(), 1u);
  EXPECT_EQ(status->leader_id(), 2u);
  EXPECT_EQ(status->role(), "follower");
  EXPECT_EQ(status->members_size(), 3);
  EXPECT_EQ(client->known_leader_id(), 2u);
  // The member list gave the leader's client address, one of the endpoints.
  ASSERT_TRUE(client->Put("a", "1").ok());
  ASSERT_TRUE(client->AddMember(4, "127.0.0.1:7004", "", false).ok());
  EXPECT_EQ(node(1).CallCount("Put"), 0);
  EXPECT_EQ(node(2).CallCount("Put"), 1);
  EXPECT_EQ(node(2).CallCount("AddMember"), 1);
  EXPECT_EQ(TotalCalls("AddMember"), 1);
}

TEST_F(KvClientTest, StatusIsOneAttemptOnOneEndpoint) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  node(1).AddFault(Fault{.method = "Status", .code = absl::StatusCode::kUnavailable,
                         .message = "shutting down"});
  auto client = NewClient(Options(Endpoints({1, 2})));
  auto status = client->Status(node(1).endpoint());
  EXPECT_EQ(status.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(status.status().message(), absl::StrCat(node(1).endpoint(), ": shutting down"));
  EXPECT_EQ(TotalCalls("Status"), 1);
  EXPECT_EQ(client->Status("not an endpoint").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(KvClientTest, ForgetsALeaderWhoseEndpointFails) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(3));
  cluster_->SetLeader(3);
  auto client = NewClient(Options(Endpoints({1, 2, 3})));
  ASSERT_TRUE(client->Status(node(3).endpoint()).ok());
  EXPECT_EQ(client->known_leader_id(), 3u);
  node(3).Stop();
  // Node 3 is gone: the write goes on to node 1 (which, being a real node,
  // would forward it), and the client no longer believes in leader 3.
  ASSERT_TRUE(client->Put("a", "1").ok());
  EXPECT_EQ(node(1).CallCount("Put"), 1);
  EXPECT_EQ(client->known_leader_id(), 0u);
}

TEST_F(KvClientTest, MembershipChangeRetriesAChangeInFlight) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(1));
  node(1).AddFault(Fault{.method = "AddMember",
                         .code = absl::StatusCode::kUnavailable,
                         .message = "another membership change is in flight; retry when it commits"});
  auto client = NewClient(Options(Endpoints({1})));
  auto members = client->AddMember(4, "127.0.0.1:7004", "127.0.0.1:9004", false);
  ASSERT_TRUE(members.ok()) << members.status();
  EXPECT_EQ(members->size(), 2u);
  EXPECT_EQ(node(1).CallCount("AddMember"), 2);
  EXPECT_EQ(members->back().role(), v1::LEARNER);
  EXPECT_EQ(members->back().client_address(), "127.0.0.1:9004");
}

// A change that can never apply is answered at once, not retried until the
// deadline (it used to be, when "in flight" shared its code).
TEST_F(KvClientTest, MembershipChangeRefusedForGoodIsNotRetried) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(1));
  node(1).AddFault(Fault{.method = "RemoveMember",
                         .code = absl::StatusCode::kFailedPrecondition,
                         .message = "cannot remove the last voter"});
  auto client = NewClient(Options(Endpoints({1})));
  const absl::Time start = absl::Now();
  auto r = client->RemoveMember(1);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_NE(r.status().message().find("cannot remove the last voter"), std::string::npos) << r.status();
  EXPECT_EQ(node(1).CallCount("RemoveMember"), 1);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));  // not the total timeout
}

TEST_F(KvClientTest, MembershipChangesAndTheirAnswers) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(1));
  auto client = NewClient(Options(Endpoints({1})));
  auto members = client->AddMember(4, "127.0.0.1:7004", "", true);
  ASSERT_TRUE(members.ok()) << members.status();
  EXPECT_EQ(members->back().role(), v1::VOTER);
  // Already there, with no earlier unknown outcome: the answer at once.
  auto again = client->AddMember(4, "127.0.0.1:7004", "", true);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(node(1).CallCount("AddMember"), 2);
  EXPECT_EQ(client->RemoveMember(9).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client->PromoteMember(9).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(client->AddMember(5, "127.0.0.1:7005", "", false).ok());
  auto promoted = client->PromoteMember(5);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  EXPECT_EQ(promoted->back().role(), v1::VOTER);
  auto listed = client->ListMembers();
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 3u);
  ASSERT_TRUE(client->RemoveMember(4).ok());
  EXPECT_EQ(client->ListMembers()->size(), 2u);
  EXPECT_EQ(client->AddMember(6, "", "", false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// The first attempt added the member but timed out; the retry is told
// ALREADY_EXISTS. The member list shows the change in place: success.
TEST_F(KvClientTest, MembershipChangeWithUnknownOutcomeIsReconciled) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(1));
  node(1).AddFault(Fault{.method = "AddMember",
                         .code = absl::StatusCode::kDeadlineExceeded,
                         .apply_first = true});
  auto client = NewClient(Options(Endpoints({1})));
  auto added = client->AddMember(4, "127.0.0.1:7004", "", false);
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->size(), 2u);
  EXPECT_EQ(node(1).CallCount("AddMember"), 2);
  EXPECT_EQ(node(1).CallCount("ListMembers"), 1);

  node(1).AddFault(Fault{.method = "RemoveMember",
                         .code = absl::StatusCode::kUnavailable,
                         .apply_first = true});
  auto removed = client->RemoveMember(4);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->size(), 1u);

  // The same refusal for a different change is an error: member 4 exists
  // with another peer address.
  ASSERT_TRUE(client->AddMember(4, "127.0.0.1:7004", "", false).ok());
  node(1).AddFault(Fault{.method = "AddMember",
                         .code = absl::StatusCode::kDeadlineExceeded});
  auto clash = client->AddMember(4, "127.0.0.1:9999", "", false);
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kAlreadyExists);
}

// A node that could not be reached never saw the request: a refusal from
// the next node is the answer, not something to reconcile.
TEST_F(KvClientTest, MembershipRefusalAfterAConnectionFailureIsTheAnswer) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  node(1).Stop();
  auto client = NewClient(Options(Endpoints({1, 2})));
  auto removed = client->RemoveMember(9);
  EXPECT_EQ(removed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(node(2).CallCount("RemoveMember"), 1);
  EXPECT_EQ(node(2).CallCount("ListMembers"), 0);
}

TEST_F(KvClientTest, TransferLeadership) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(3));
  auto client = NewClient(Options(Endpoints({1, 2, 3})));
  // To a named node a timed-out attempt is repeated (idempotent)...
  node(1).AddFault(Fault{.method = "TransferLeadership",
                         .code = absl::StatusCode::kDeadlineExceeded});
  auto leader = client->TransferLeadership(2);
  ASSERT_TRUE(leader.ok()) << leader.status();
  EXPECT_EQ(*leader, 2u);
  EXPECT_EQ(client->known_leader_id(), 2u);
  EXPECT_EQ(TotalCalls("TransferLeadership"), 2);
  // ...to "any" it is not: a second transfer would move leadership again.
  for (int id = 1; id <= 3; ++id) {
    node(id).AddFault(Fault{.method = "TransferLeadership",
                            .code = absl::StatusCode::kDeadlineExceeded});
  }
  auto any = client->TransferLeadership(0);
  EXPECT_EQ(any.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(TotalCalls("TransferLeadership"), 3);
  EXPECT_EQ(cluster_->leader_id(), 2u);
}

TEST_F(KvClientTest, HealthCheck) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  auto client = NewClient(Options(Endpoints({1})));
  auto health = client->CheckHealth(node(1).endpoint());
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, HealthStatus::kServing);
  node(1).SetServing(false);
  EXPECT_EQ(*client->CheckHealth(node(1).endpoint()), HealthStatus::kNotServing);
  // An endpoint that is not configured works too.
  EXPECT_EQ(*client->CheckHealth(node(2).endpoint()), HealthStatus::kServing);
  node(2).Stop();
  auto down = client->CheckHealth(node(2).endpoint());
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(down.status().message()), HasSubstr(node(2).endpoint()));
  EXPECT_EQ(HealthStatusName(HealthStatus::kNotServing), "NOT_SERVING");
}

// A probe whose connection fails (nothing listens yet) waits a moment for
// the channel to reconnect instead of calling a node that is coming up (or
// whose first connection failed by chance) unreachable; a node that stays
// down is still reported well before the request timeout.
TEST_F(KvClientTest, HealthCheckWaitsBrieflyForAReconnection) {
  // Node 2 stopped: its port is known and nothing listens there.
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  node(2).Stop();
  const std::string endpoint = node(2).endpoint();
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(endpoint.substr(endpoint.rfind(':') + 1), &port)) << endpoint;

  auto client = NewClient(Options({endpoint}));
  const absl::Time start = absl::Now();
  auto down = client->CheckHealth(endpoint);
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable) << down.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2)) << "a dead endpoint took the request timeout";

  // Node 2 comes back on its port 150 ms after the probe starts.
  std::unique_ptr<FakeNode> restarted;
  std::thread starter([&] {
    absl::SleepFor(absl::Milliseconds(150));
    auto started = FakeNode::Start(cluster_, 2, port);
    if (started.ok()) restarted = *std::move(started);
  });
  auto up = client->CheckHealth(endpoint);
  starter.join();
  ASSERT_NE(restarted, nullptr);
  EXPECT_TRUE(up.ok()) << up.status();
  if (up.ok()) {
    EXPECT_EQ(*up, HealthStatus::kServing);
  }
}

// Threads sharing a client: every write succeeds once, and no client id
// ever has two writes outstanding (the fake refuses an older sequence
// after a newer one, as the state machine does).
TEST_F(KvClientTest, ThreadsShareOneClient) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  auto client = NewClient(Options(Endpoints({1, 2})));
  constexpr int kThreads = 4;
  constexpr int kWrites = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWrites; ++i) {
        const std::string key = absl::StrCat("t", t, "-", i);
        if (!client->Put(key, key).ok()) ++failures;
        auto value = client->Get(key);
        if (!value.ok() || *value != std::optional<std::string>(key)) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(cluster_->applied_writes(), kThreads * kWrites);

  std::map<uint64_t, std::set<uint64_t>> sequences;
  for (const auto& n : nodes_) {
    for (const CallRecord& call : n->calls()) {
      if (call.method == "Put") sequences[call.client_id].insert(call.sequence);
    }
  }
  EXPECT_GE(sequences.size(), 1u);
  EXPECT_LE(sequences.size(), static_cast<size_t>(kThreads));
  EXPECT_TRUE(sequences.contains(client->client_id()));
  size_t total = 0;
  for (const auto& [id, seqs] : sequences) {
    total += seqs.size();
    for (uint64_t s : seqs) EXPECT_EQ(cluster_->ApplyCount(id, s), 1);
  }
  EXPECT_EQ(total, static_cast<size_t>(kThreads * kWrites));
}

}  // namespace
}  // namespace quorumkv::client
