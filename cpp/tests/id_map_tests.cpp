// earn_id_map_tests: earn::IdMap on hand-written item_ids.json files: lookups by spelling (str and int maps),
// titles, JSON output, and every refusal naming the file (missing, invalid JSON, partial, repeated, mistyped,
// another catalog's size). Exit status 0 when every check passes; the failures are printed.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "earn/id_map.hpp"

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::cerr << "FAIL: " << what << "\n";
  }
}

std::string write(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// The message of the IdMapError that loading `path` throws ("" when none is thrown).
std::string refusal(const std::string& path, int64_t n_items = -1) {
  try {
    earn::IdMap::load_file(path, n_items);
  } catch (const earn::IdMapError& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/tmp";
  const std::string head = R"({"format": "earn-item-ids", "version": 1, )";

  const auto s = earn::IdMap::load_file(write(dir, "str.json", head + R"("n_items": 3, "id_type": "str",
      "ids": ["sku-3", "sku-10", "a \"quoted\" id"], "titles": {"1": "Rose lip balm"}})"), 3);
  check(!s.int_ids() && s.size() == 3 && s.has_titles(), "str map fields");
  check(s.lookup("sku-10") == 1 && !s.lookup("sku-11") && !s.lookup("1"), "str lookups by spelling");
  check(s.lookup(" sku-10\t") == 1 && !s.lookup("  ") && !s.lookup(""), "surrounding whitespace ignored");
  check(s.original(2) == "a \"quoted\" id" && s.json_value(s.original(2)) == R"("a \"quoted\" id")", "str JSON");
  check(s.title(1) && *s.title(1) == "Rose lip balm" && !s.title(0), "titles");

  const auto i = earn::IdMap::load_file(write(dir, "int.json", head + R"("n_items": 2, "id_type": "int",
      "ids": [1013, 7]})"));
  check(i.int_ids() && i.lookup("7") == 1 && i.lookup("1013") == 0 && !i.lookup("07"), "int lookups");
  check(i.json_value("1013") == "1013" && i.json_value("x") == "\"x\"", "int JSON: numbers for its ids");

  check(has(refusal(dir + "/none.json"), "none.json: missing"), "missing file");
  check(has(refusal(write(dir, "bad.json", "{not json")), "bad.json: not valid JSON"), "invalid JSON");
  check(has(refusal(write(dir, "fmt.json", R"({"ids": []})")), "fmt.json: not an item id map"), "format");
  check(has(refusal(write(dir, "part.json", head + R"("n_items": 3, "id_type": "str", "ids": ["a", "b"]})")),
            "part.json: partial map, 2 ids for n_items=3"), "partial");
  check(has(refusal(write(dir, "nofield.json", head + R"("n_items": 0, "ids": []})")),
            "nofield.json: field 'id_type' missing"), "missing field");
  check(has(refusal(write(dir, "dup.json", head + R"("n_items": 2, "id_type": "str", "ids": ["a", "a"]})")),
            "dup.json: original id \"a\" appears more than once"), "repeated id");
  check(has(refusal(write(dir, "type.json", head + R"("n_items": 2, "id_type": "int", "ids": [1, "b"]})")),
            "type.json: id_type 'int' but id \"b\""), "mistyped id");
  check(has(refusal(write(dir, "size.json", head + R"("n_items": 1, "id_type": "str", "ids": ["a"]})"), 5),
            "size.json: 1 ids for a catalog of 5 items"), "another catalog");
  check(has(refusal(write(dir, "title.json", head + R"("n_items": 1, "id_type": "str", "ids": ["a"],
      "titles": {"4": "x"}})")), "title.json: titles must map catalog indices 0..0"), "title index");
  std::cout << (failures ? "id map checks FAILED\n" : "id map checks passed\n");
  return failures ? 1 : 0;
}
