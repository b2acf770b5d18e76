// The JSON Lines encoding of histories (shared/HISTORY.md).
#include "tests/lincheck/history.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

namespace quorumkv::lincheck {
namespace {

using ::testing::HasSubstr;

Event Make(int64_t process, EventType type, Function f, std::string key, int64_t time) {
  Event e;
  e.process = process;
  e.type = type;
  e.f = f;
  e.key = std::move(key);
  e.time_ns = time;
  return e;
}

// One of every kind of event the format has.
std::vector<Event> EveryKind() {
  std::vector<Event> all;
  for (EventType t : {EventType::kInvoke, EventType::kOk, EventType::kFail, EventType::kInfo}) {
    Event put = Make(3, t, Function::kPut, "k7", 1700000000123456789);
    put.value = "v-3-112";
    all.push_back(put);
    if (t == EventType::kFail || t == EventType::kInfo) {
      put.value.reset();  // a failed or timed-out put may leave its value out
      all.push_back(put);
    }

    Event del = Make(4, t, Function::kDelete, "k1", 5);
    all.push_back(del);

    for (Consistency c :
         {Consistency::kLinearizable, Consistency::kLease, Consistency::kSerializable}) {
      Event get = Make(1, t, Function::kGet, "k7", 17);
      get.consistency = c;
      all.push_back(get);  // null value: invoke, fail, info, and an ok of an absent key
      if (t == EventType::kOk) {
        get.value = "v-3-112";
        all.push_back(get);
      }
    }

    for (bool expected_absent : {false, true}) {
      for (bool swapped : {false, true}) {
        if (swapped && t != EventType::kOk) continue;
        Event cas = Make(-2, t, Function::kCas, "", -40);
        if (!expected_absent) cas.cas_expected = "old \"quoted\" \\ value";
        cas.cas_new = "new-\xc3\xa9-\n";  // UTF-8 and a control character
        cas.cas_ok = swapped;
        all.push_back(cas);
      }
    }
  }
  return all;
}

TEST(HistoryJson, RoundTripsEveryKindOfEvent) {
  for (const Event& e : EveryKind()) {
    const std::string line = ToJsonLine(e);
    EXPECT_EQ(line.find('\n'), std::string::npos) << line;
    absl::StatusOr<Event> back = ParseJsonLine(line);
    ASSERT_TRUE(back.ok()) << line << ": " << back.status();
    EXPECT_EQ(*back, e) << line;
  }
}

TEST(HistoryJson, WritesTheFieldsOfTheFormat) {
  Event put = Make(3, EventType::kInvoke, Function::kPut, "k7", 1700000000123456789);
  put.value = "v-3-112";
  EXPECT_EQ(ToJsonLine(put),
            R"({"process":3,"type":"invoke","f":"put","key":"k7","value":"v-3-112",)"
            R"("time":1700000000123456789})");

  Event get = Make(1, EventType::kOk, Function::kGet, "k7", 9);
  EXPECT_EQ(ToJsonLine(get),
            R"({"process":1,"type":"ok","f":"get","key":"k7","value":null,"time":9})");
  get.consistency = Consistency::kLease;
  EXPECT_THAT(ToJsonLine(get), HasSubstr(R"("consistency":"lease")"));

  Event cas = Make(2, EventType::kOk, Function::kCas, "k", 1);
  cas.cas_new = "b";
  cas.cas_ok = true;
  EXPECT_THAT(ToJsonLine(cas), HasSubstr(R"("value":{"expected":null,"new":"b","ok":true})"));
  cas.type = EventType::kInvoke;
  cas.cas_ok = false;
  EXPECT_THAT(ToJsonLine(cas), HasSubstr(R"("value":{"expected":null,"new":"b"},)"));
}

TEST(HistoryJson, ParsesTheExampleOfTheFormat) {
  // Verbatim from HISTORY.md, with its extra spaces.
  absl::StatusOr<Event> e = ParseJsonLine(
      R"({"process": 3, "type": "ok",     "f": "put", "key": "k7", "value": "v-3-112", "time": 1700000000125000000})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->process, 3);
  EXPECT_EQ(e->type, EventType::kOk);
  EXPECT_EQ(e->f, Function::kPut);
  EXPECT_EQ(e->key, "k7");
  EXPECT_EQ(e->value, "v-3-112");
  EXPECT_EQ(e->time_ns, 1700000000125000000);
  EXPECT_EQ(e->consistency, Consistency::kLinearizable);

  absl::StatusOr<Event> cas = ParseJsonLine(
      R"({"process":5,"type":"ok","f":"cas","key":"a","value":{"expected":"x","new":"y","ok":false},"time":3,"error":"ignored"})");
  ASSERT_TRUE(cas.ok()) << cas.status();
  EXPECT_EQ(cas->cas_expected, "x");
  EXPECT_EQ(cas->cas_new, "y");
  EXPECT_FALSE(cas->cas_ok);

  absl::StatusOr<Event> get = ParseJsonLine(
      R"({"process":1,"type":"invoke","f":"get","key":"a","time":3,"consistency":"serializable"})");
  ASSERT_TRUE(get.ok()) << get.status();  // a missing value is null
  EXPECT_EQ(get->consistency, Consistency::kSerializable);
  EXPECT_FALSE(get->value.has_value());
}

TEST(HistoryJson, RejectsBadLinesWithAMessageNamingTheProblem) {
  struct Case {
    const char* line;
    const char* message;
  };
  const Case cases[] = {
      {R"({"process":1,"type":"invoke")", "not valid JSON"},
      {R"([1,2])", "expected a JSON object"},
      {R"({"type":"invoke","f":"get","key":"k","time":1})", "missing field 'process'"},
      {R"({"process":"1","type":"invoke","f":"get","key":"k","time":1})",
       "'process' must be an integer"},
      {R"({"process":1.5,"type":"invoke","f":"get","key":"k","time":1})",
       "'process' must be an integer"},
      {R"({"process":1,"type":"done","f":"get","key":"k","time":1})", "'type' must be one of"},
      {R"({"process":1,"type":"ok","f":"append","key":"k","time":1})", "'f' must be one of"},
      {R"({"process":1,"type":"ok","f":"get","key":7,"time":1})", "'key' must be a string"},
      {R"({"process":1,"type":"ok","f":"get","key":"k"})", "missing field 'time'"},
      {R"({"process":1,"type":"ok","f":"get","key":"k","time":18446744073709551615})",
       "out of the int64 range"},
      {R"({"process":1,"type":"invoke","f":"put","key":"k","value":null,"time":1})",
       "must be the string written"},
      {R"({"process":1,"type":"ok","f":"get","key":"k","value":5,"time":1})",
       "must be the string read or null"},
      {R"({"process":1,"type":"invoke","f":"get","key":"k","value":"x","time":1})",
       "must be null"},
      {R"({"process":1,"type":"ok","f":"delete","key":"k","value":"x","time":1})",
       "must be null"},
      {R"({"process":1,"type":"invoke","f":"cas","key":"k","value":"x","time":1})",
       "must be an object"},
      {R"({"process":1,"type":"invoke","f":"cas","key":"k","value":{"new":"y"},"time":1})",
       "lacks 'expected'"},
      {R"({"process":1,"type":"invoke","f":"cas","key":"k","value":{"expected":null},"time":1})",
       "'new' must be a string"},
      {R"({"process":1,"type":"ok","f":"cas","key":"k","value":{"expected":null,"new":"y"},"time":1})",
       "'ok' must be true or false"},
      {R"({"process":1,"type":"invoke","f":"cas","key":"k","value":{"expected":null,"new":"y","ok":true},"time":1})",
       "'ok' belongs only on an ok completion"},
      {R"({"process":1,"type":"invoke","f":"get","key":"k","time":1,"consistency":"strong"})",
       "'consistency' must be one of"},
      {R"({"process":1,"type":"invoke","f":"put","key":"k","value":"v","time":1,"consistency":"lease"})",
       "applies to get only"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<Event> e = ParseJsonLine(c.line);
    ASSERT_FALSE(e.ok()) << c.line;
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << c.line;
    EXPECT_THAT(std::string(e.status().message()), HasSubstr(c.message)) << c.line;
  }
}

TEST(HistoryReader, ErrorNamesTheLine) {
  std::istringstream in(
      "{\"process\":1,\"type\":\"invoke\",\"f\":\"get\",\"key\":\"k\",\"value\":null,\"time\":1}\n"
      "\n"
      "{\"process\":1,\"type\":\"ok\",\"f\":\"get\",\"key\":\"k\",\"value\":null,\"time\":2}\n"
      "{\"process\":1,\"type\":\"oops\",\"f\":\"get\",\"key\":\"k\",\"time\":3}\n");
  absl::StatusOr<std::vector<Event>> events = ReadHistory(in);
  ASSERT_FALSE(events.ok());
  EXPECT_EQ(events.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(events.status().message()), HasSubstr("line 4: "));
  EXPECT_THAT(std::string(events.status().message()), HasSubstr("'type'"));
}

TEST(HistoryReader, SkipsBlankLinesAndAcceptsCrlf) {
  std::istringstream in(
      "\n{\"process\":1,\"type\":\"invoke\",\"f\":\"delete\",\"key\":\"k\",\"value\":null,"
      "\"time\":1}\r\n   \n"
      "{\"process\":1,\"type\":\"ok\",\"f\":\"delete\",\"key\":\"k\",\"value\":null,\"time\":2}");
  absl::StatusOr<std::vector<Event>> events = ReadHistory(in);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[1].type, EventType::kOk);
}

TEST(HistoryReader, MissingFileIsNotFound) {
  absl::StatusOr<std::vector<Event>> events = ReadHistoryFile("/nonexistent/dir/history.jsonl");
  ASSERT_FALSE(events.ok());
  EXPECT_EQ(events.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(events.status().message()), HasSubstr("/nonexistent/dir/history.jsonl"));
}

TEST(HistoryWriter, WritesLinesThatReadBack) {
  const std::vector<Event> all = EveryKind();
  std::ostringstream out;
  HistoryWriter writer(out);
  for (const Event& e : all) writer.Write(e);
  writer.Flush();
  std::istringstream in(out.str());
  absl::StatusOr<std::vector<Event>> back = ReadHistory(in);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, all);
}

TEST(HistoryWriter, FileRoundTrip) {
  const std::string path = ::testing::TempDir() + "/lincheck_history_file_round_trip.jsonl";
  const std::vector<Event> all = EveryKind();
  {
    std::ofstream out(path);
    HistoryWriter writer(out);
    for (const Event& e : all) writer.Write(e);
  }
  absl::StatusOr<std::vector<Event>> back = ReadHistoryFile(path);
  std::remove(path.c_str());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, all);
}

TEST(HistoryWriter, ConcurrentWritersNeverInterleaveLines) {
  std::ostringstream out;
  HistoryWriter writer(out);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&writer, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Event e = Make(t, EventType::kInvoke, Function::kPut, "key-" + std::to_string(t), i);
        e.value = std::string(100, static_cast<char>('a' + t));
        writer.Write(e);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::istringstream in(out.str());
  absl::StatusOr<std::vector<Event>> back = ReadHistory(in);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->size(), static_cast<size_t>(kThreads * kPerThread));
}

}  // namespace
}  // namespace quorumkv::lincheck
