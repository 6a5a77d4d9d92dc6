#ifndef CARBONSTORE_HARDWARE_CRC_H
#define CARBONSTORE_HARDWARE_CRC_H

#include <stddef.h>
#include <stdint.h>

// CRC-32C (Castagnoli) with the processor's own instruction: SSE 4.2's `crc32` on x86-64, the CRC
// extension's `crc32c` on 64-bit Arm. CarbonFormat's CRC32C uses it where
// `carbonstore_crc32c_available` says the processor has it, and its table-driven code elsewhere.

/// 1 when this processor has a CRC-32C instruction, else 0.
int carbonstore_crc32c_available(void);

/// Continues the running (pre-inverted, not finished) CRC-32C register `crc` over `count` bytes
/// at `bytes`. Call only where `carbonstore_crc32c_available()` is 1.
uint32_t carbonstore_crc32c_update(uint32_t crc, const void *bytes, size_t count);

#endif
