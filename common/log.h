// Structured logging: one JSON object per line on stderr.
// Thread-safe: a line is written with a single write under a mutex.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace bg::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Returns false for an unknown level name.
bool SetLevel(std::string_view name);
Level CurrentLevel();

void Write(Level level, std::string_view msg,
           const nlohmann::json& fields = nlohmann::json::object());

inline void Debug(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  Write(Level::kDebug, m, f);
}
inline void Info(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  Write(Level::kInfo, m, f);
}
inline void Warn(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  Write(Level::kWarn, m, f);
}
inline void Error(std::string_view m, const nlohmann::json& f = nlohmann::json::object()) {
  Write(Level::kError, m, f);
}

}  // namespace bg::log
