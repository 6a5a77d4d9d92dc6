// libdeflate (Debian: libdeflate-dev): whole-buffer deflate that reads and writes zlib (RFC 1950)
// streams, used by CarbonFormat to compress and inflate sections.
#include <libdeflate.h>
