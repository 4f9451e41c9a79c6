#ifndef COUNTERSIGN_CFUZZER_H
#define COUNTERSIGN_CFUZZER_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (compiler-rt, linked by -sanitize=fuzzer). Declared here because
/// SwiftPM gives every executable its own `main`, so a fuzz target starts the driver itself.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
