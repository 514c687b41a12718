// The io-properties format (YAML subset and JSON), its errors, and the options that load it.
#include "runtime/io/io_properties.hh"
#include "runtime/options.hh"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

using namespace reef;
using namespace reef::io;

namespace {

std::string error_of(const std::string& text) {
    try {
        parse_io_properties(text, "props.yaml");
    } catch (const io_properties_error& e) {
        return e.what();
    }
    return "no error";
}

TEST(io_properties, yaml_as_iotune_writes_it) {
    auto d = parse_io_properties(R"(# measured by iotune
disks:
  - mountpoint: /var/lib/reef   # the data directory
    read_iops: 95000
    read_bandwidth: 545000000
    write_iops: 85000.5
    write_bandwidth: 5.1e8
    max_in_flight: 48
)",
                                 "x");
    EXPECT_EQ(d.mountpoint, "/var/lib/reef");
    EXPECT_EQ(d.read_iops, 95000);
    EXPECT_EQ(d.read_bandwidth, 545000000);
    EXPECT_EQ(d.write_iops, 85000.5);
    EXPECT_EQ(d.write_bandwidth, 5.1e8);
    EXPECT_EQ(d.max_in_flight, 48u);
}

TEST(io_properties, json_and_defaults) {
    auto d = parse_io_properties(R"({"disks": [{"mountpoint": "/d", "read_iops": 1000, "read_bandwidth": 2e6,
        "write_iops": 500, "write_bandwidth": 1e6}]})",
                                 "x.json");
    EXPECT_EQ(d.mountpoint, "/d");
    EXPECT_EQ(d.read_iops, 1000);
    EXPECT_EQ(d.write_bandwidth, 1e6);
    EXPECT_EQ(d.max_in_flight, 32u);  // the default when absent
}

TEST(io_properties, format_reads_back_unchanged) {
    disk_properties d;
    d.mountpoint = "/odd \"path\" # here";
    d.read_iops = 12345;
    d.read_bandwidth = 987654321;
    d.write_iops = 2345;
    d.write_bandwidth = 87654321;
    d.max_in_flight = 7;
    auto text = format_io_properties(d, "line one\nline two");
    EXPECT_EQ(text.rfind("# line one\n# line two\n", 0), 0u) << text;
    auto r = parse_io_properties(text, "x");
    EXPECT_EQ(r.mountpoint, d.mountpoint);
    EXPECT_EQ(r.read_iops, d.read_iops);
    EXPECT_EQ(r.read_bandwidth, d.read_bandwidth);
    EXPECT_EQ(r.write_iops, d.write_iops);
    EXPECT_EQ(r.write_bandwidth, d.write_bandwidth);
    EXPECT_EQ(r.max_in_flight, d.max_in_flight);
}

TEST(io_properties, errors_name_the_line_and_the_field) {
    EXPECT_EQ(error_of("disks:\n  - mountpoint: /a\n    read_iops: fast\n"),
              "props.yaml, line 3: read_iops: expected a positive number, got 'fast'");
    EXPECT_EQ(error_of("disks:\n  - mountpoint: /a\n    read_iops: -5\n"),
              "props.yaml, line 3: read_iops: expected a positive number, got '-5'");
    auto unknown = error_of(
        "disks:\n  - mountpoint: /a\n    read_iops: 1\n    read_bandwith: 1\n");
    EXPECT_EQ(unknown.rfind("props.yaml, line 4: unknown field 'read_bandwith'", 0), 0u) << unknown;
    auto missing = error_of("disks:\n  - mountpoint: /a\n    read_iops: 1\n    read_bandwidth: 1\n    write_iops: 1\n");
    EXPECT_EQ(missing, "props.yaml, line 2: write_bandwidth: missing from this disk entry");
    EXPECT_EQ(error_of("disks:\n  - mountpoint: /a\n     read_iops: 1\n"), "props.yaml, line 3: unexpected indentation");
    EXPECT_EQ(error_of("disks: 5\n"), "props.yaml, line 1: disks: expected a list of at least one disk");
    EXPECT_EQ(error_of("disk:\n  - mountpoint: /a\n"), "props.yaml, line 1: unknown field 'disk' (expected 'disks')");
    EXPECT_EQ(error_of(""), "props.yaml, line 1: the file is empty");
    EXPECT_EQ(error_of("{\"disks\": [\n  {\"mountpoint\": \"/a\",\n   \"read_iops\": }]}"),
              "props.yaml, line 3: unexpected '}'");
    EXPECT_EQ(error_of("{\"disks\": [{\"mountpoint\": \"/a\", \"read_iops\": 1, \"read_bandwidth\": 1,\n"
                       "\"write_iops\": 1, \"write_bandwidth\": 1, \"max_in_flight\": 2.5}]}"),
              "props.yaml, line 2: max_in_flight: expected a whole number from 1 to 65536, got '2.5'");
    EXPECT_EQ(error_of("disks:\n  - mountpoint: /a\n    read_iops 5\n"),
              "props.yaml, line 3: expected 'field: value', got 'read_iops 5'");
}

TEST(io_properties, missing_file_names_the_path_and_errno_text) {
    try {
        load_io_properties("/nonexistent/io.yaml");
        FAIL() << "loaded a missing file";
    } catch (const io_properties_error& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("/nonexistent/io.yaml"), std::string::npos) << m;
        EXPECT_NE(m.find("No such file or directory"), std::string::npos) << m;
    }
}

TEST(io_properties, backend_names) {
    EXPECT_EQ(parse_backend_choice("io_uring"), backend_choice::io_uring);
    EXPECT_EQ(parse_backend_choice("linux-aio"), backend_choice::linux_aio);
    EXPECT_EQ(parse_backend_choice("auto"), backend_choice::auto_select);
    EXPECT_THROW(parse_backend_choice("epoll"), std::invalid_argument);
}

struct options_parse {
    CLI::App app{"test"};
    runtime_options opts;
    options_parse() { opts.register_options(app); }
    std::string parse(std::vector<std::string> args) {
        std::vector<const char*> argv{"test"};
        for (auto& a : args) {
            argv.push_back(a.c_str());
        }
        try {
            app.parse(int(argv.size()), const_cast<char**>(argv.data()));
        } catch (const CLI::ParseError& e) {
            return e.what();
        }
        return {};
    }
};

TEST(io_options, backend_and_properties_file_reach_the_io_config) {
    std::string path = ::testing::TempDir() + "/reef-io-props.yaml";
    {
        std::ofstream out(path);
        out << "disks:\n  - mountpoint: /x\n    read_iops: 10\n    read_bandwidth: 20\n    write_iops: 30\n"
               "    write_bandwidth: 40\n";
    }
    options_parse p;
    EXPECT_EQ(p.parse({"--reactor-backend", "linux-aio", "--io-properties-file", path}), "");
    auto cfg = get_io_config();
    EXPECT_EQ(cfg.backend, backend_choice::linux_aio);
    ASSERT_TRUE(cfg.disk);
    EXPECT_EQ(cfg.disk->write_bandwidth, 40);
    EXPECT_EQ(cfg.properties_origin, path);
    set_io_config({});
    std::remove(path.c_str());
}

TEST(io_options, malformed_properties_file_fails_parsing_with_line_and_field) {
    std::string path = ::testing::TempDir() + "/reef-io-bad.yaml";
    {
        std::ofstream out(path);
        out << "disks:\n  - mountpoint: /x\n    read_iops: lots\n";
    }
    options_parse p;
    auto err = p.parse({"--io-properties-file", path});
    EXPECT_NE(err.find("--io-properties-file"), std::string::npos) << err;
    EXPECT_NE(err.find("line 3: read_iops"), std::string::npos) << err;
    options_parse q;
    err = q.parse({"--reactor-backend", "epoll"});
    EXPECT_NE(err.find("--reactor-backend"), std::string::npos) << err;
    std::remove(path.c_str());
}

}  // namespace
