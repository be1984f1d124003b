// Cheap checks that catch the commonest broken files (not a library, cut off by a failed copy or
// download, built for another machine) with a precise message, before dlopen gives a vague one.
#include <elf.h>

#include <fstream>
#include <string>

#include "nexus/registry/probe.hpp"

namespace nexus::registry {
namespace {

bool read_header(const std::string& path, Elf64_Ehdr& h, std::streamsize& got) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  in.read(reinterpret_cast<char*>(&h), sizeof h);
  got = in.gcount();
  return true;
}

}  // namespace

std::string check_elf_file(const std::string& path) {
  Elf64_Ehdr h{};
  std::streamsize got = 0;
  if (!read_header(path, h, got)) return "cannot open the file for reading";
  if (got < 4 || h.e_ident[EI_MAG0] != ELFMAG0 || h.e_ident[EI_MAG1] != ELFMAG1 || h.e_ident[EI_MAG2] != ELFMAG2 ||
      h.e_ident[EI_MAG3] != ELFMAG3)
    return "not a shared library: the file does not start with an ELF header";
  if (got < std::streamsize(sizeof h))
    return "truncated library: the file ends inside its ELF header (" + std::to_string(got) + " bytes)";
  if (h.e_ident[EI_CLASS] != ELFCLASS64) return "not a 64-bit library";
  if (h.e_type != ET_DYN) return "not a shared library: ELF type " + std::to_string(h.e_type) + " (expected ET_DYN)";
  Elf64_Ehdr self{};
  std::streamsize self_got = 0;
  if (read_header("/proc/self/exe", self, self_got) && self_got == std::streamsize(sizeof self) &&
      self.e_machine != h.e_machine)
    return "built for another machine: ELF machine " + std::to_string(h.e_machine) + ", this host is " +
           std::to_string(self.e_machine);
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  const uint64_t size = uint64_t(in.tellg());
  const uint64_t ph_end = h.e_phoff + uint64_t(h.e_phnum) * h.e_phentsize;
  const uint64_t sh_end = h.e_shoff + uint64_t(h.e_shnum) * h.e_shentsize;
  const uint64_t end = std::max(ph_end, sh_end);
  if (end > size)
    return "truncated library: its headers end at byte " + std::to_string(end) + " but the file has " +
           std::to_string(size) + " bytes";
  return "";
}

}  // namespace nexus::registry
