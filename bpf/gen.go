package bpf

// The program is compiled for little-endian BPF. linux/bpf.h needs the asm
// headers of Debian's multiarch include folders; clang skips whichever of
// them is missing.
//go:generate go tool bpf2go -tags linux -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" meter meter.c
