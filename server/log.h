// Logs a person can follow: one line per event, with a UTC timestamp and a
// level, to stderr. printf-style, because abseil 20220623 has no absl/log.
#pragma once

#include <cstdarg>

namespace quorumkv::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLogLevel(LogLevel level);
void SetLogPrefix(const char* prefix);  // e.g. "n1"; copied
void LogLine(LogLevel level, const char* format, ...) __attribute__((format(printf, 2, 3)));

}  // namespace quorumkv::server

#define LOG_DEBUG(...) ::quorumkv::server::LogLine(::quorumkv::server::LogLevel::kDebug, __VA_ARGS__)
#define LOG_INFO(...) ::quorumkv::server::LogLine(::quorumkv::server::LogLevel::kInfo, __VA_ARGS__)
#define LOG_WARN(...) ::quorumkv::server::LogLine(::quorumkv::server::LogLevel::kWarn, __VA_ARGS__)
#define LOG_ERROR(...) ::quorumkv::server::LogLine(::quorumkv::server::LogLevel::kError, __VA_ARGS__)
