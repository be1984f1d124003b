#include <doctest/doctest.h>

#include <nexus/options.hpp>
#include <nexus/sha256.hpp>

using namespace nexus;

TEST_CASE("option schema: types, defaults, requirements") {
  auto specs = parse_option_schema("d_in:int!,hidden:int=256,act:choice(relu|gelu)=gelu,names:list,p:float=0.5");
  REQUIRE(specs.size() == 5);
  CHECK(specs[0].required);
  CHECK(specs[1].default_value == "256");
  CHECK(specs[2].type == "choice");
  CHECK(specs[2].choices == std::vector<std::string>{"relu", "gelu"});
  CHECK(specs[2].default_value == "gelu");
  CHECK_THROWS_AS(parse_option_schema("x:complex"), OptionError);

  auto o = Options().set("d_in", "8").with_schema("d_in:int!,hidden:int=256,act:choice(relu|gelu)=gelu");
  CHECK(o.get_int("hidden") == 256);
  CHECK(o.get_string("act") == "gelu");
  CHECK_THROWS_WITH(Options().set("d_in", "8").set("act", "tanh").with_schema("d_in:int!,act:choice(relu|gelu)=gelu"),
                    "option 'act' must be one of relu|gelu, got 'tanh'");
  CHECK_THROWS_WITH(Options().with_schema("d_in:int!"), "missing required option 'd_in' (int)");
}

TEST_CASE("options: parse and typed getters") {
  auto o = Options::parse("a=1; b = x=y ;c=1,2,3");
  CHECK(o.get_int("a") == 1);
  CHECK(o.get_string("b") == "x=y");
  CHECK(o.get_int_list("c") == std::vector<int64_t>{1, 2, 3});
  CHECK_THROWS_WITH(o.get_double("b"), "option 'b' must be a number, got 'x=y'");
  CHECK(o.get_bool("missing", true));
}

TEST_CASE("sha256 matches the FIPS 180-2 vectors") {
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
