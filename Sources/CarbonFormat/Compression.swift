import CDeflate

// Compressed sections hold a zlib stream (RFC 1950: a deflate stream with an Adler-32), as
// docs/FORMAT.md says. libdeflate writes and reads these streams about twice as fast as zlib
// does: its streams are inflated by any zlib reader, and it inflates any zlib writer's streams,
// so using it changes no byte a reader relies on (only which deflate encoding a writer picks).

extension RecordCodec {
    /// The zlib stream (RFC 1950) of `input` at `level` (zlib's scale: 1 fastest, 6 default,
    /// 9 smallest; -1 means 6), or nil if it could not be produced.
    static func deflate(_ input: UnsafeRawBufferPointer, level: Int32) -> [UInt8]? {
        guard let src = input.baseAddress else { return nil }
        let lev = level < 0 ? 6 : min(9, level)
        guard let compressor = libdeflate_alloc_compressor(lev) else { return nil }
        defer { libdeflate_free_compressor(compressor) }
        let bound = libdeflate_zlib_compress_bound(compressor, input.count)
        let out = [UInt8](unsafeUninitializedCapacity: bound) { buffer, initialized in
            initialized = libdeflate_zlib_compress(compressor, src, input.count, buffer.baseAddress, bound)
        }
        return out.isEmpty ? nil : out
    }

    /// Inflates a compressed section body (u32 raw length, then a zlib stream) after checking the
    /// declared length against what deflate can produce and `maxRatio`, into a buffer of exactly
    /// the declared length (inflation stops there), and checks the output is exactly that long
    /// and the stream ends exactly at the end of the body. The Adler-32 of the stream is checked.
    /// The caller has checked the declared length against the decoded-size limit.
    static func inflate(_ body: UnsafeRawBufferPointer, offset: Int, tag: UInt16, maxRatio: Int)
        throws(FormatError) -> [UInt8]
    {
        let rawLength = Int(body.loadUnaligned(as: UInt32.self).littleEndian)
        let stream = UnsafeRawBufferPointer(rebasing: body[4...])
        guard rawLength >= 1 else {
            throw FormatError(
                .malformed, offset: offset, sectionTag: tag, detail: "compressed section of raw length 0")
        }
        // Deflate cannot expand more than 1032:1, so a larger claim is a lie: refuse it unallocated.
        guard rawLength <= stream.count * maxDeflateRatio else {
            throw FormatError(
                .decompressionFailed, offset: offset, sectionTag: tag,
                detail: "raw length \(rawLength) is more than \(stream.count) compressed bytes can hold")
        }
        guard rawLength <= stream.count * min(max(maxRatio, 0), maxDeflateRatio) else {
            throw FormatError(
                .limitExceeded, offset: offset, sectionTag: tag,
                detail:
                    "raw length \(rawLength) is more than \(maxRatio) times the \(stream.count) compressed bytes (RecordCodec.Limits.maxCompressionRatio)"
            )
        }
        guard let src = stream.baseAddress, !stream.isEmpty else {
            throw FormatError(.decompressionFailed, offset: offset + 4, sectionTag: tag, detail: "no data")
        }
        guard let decompressor = libdeflate_alloc_decompressor() else {
            throw FormatError(
                .decompressionFailed, offset: offset + 4, sectionTag: tag, detail: "out of memory")
        }
        defer { libdeflate_free_decompressor(decompressor) }
        var consumed = 0
        var produced = 0
        var status = LIBDEFLATE_SUCCESS
        let out = [UInt8](unsafeUninitializedCapacity: rawLength) { buffer, initialized in
            status = libdeflate_zlib_decompress_ex(
                decompressor, src, stream.count, buffer.baseAddress, rawLength, &consumed, &produced)
            initialized = status == LIBDEFLATE_SUCCESS ? produced : 0
        }
        guard status == LIBDEFLATE_SUCCESS else {
            let reason =
                switch status {
                case LIBDEFLATE_INSUFFICIENT_SPACE:
                    "the data inflates to more than the declared \(rawLength) bytes"
                case LIBDEFLATE_BAD_DATA: "the zlib stream is corrupt or cut short"
                default: "inflate error \(status.rawValue)"
                }
            throw FormatError(.decompressionFailed, offset: offset + 4, sectionTag: tag, detail: reason)
        }
        guard produced == rawLength else {
            throw FormatError(
                .decompressionFailed, offset: offset + 4, sectionTag: tag,
                detail: "inflated to \(produced) bytes, declared \(rawLength)")
        }
        guard consumed == stream.count else {
            throw FormatError(
                .trailingBytes, offset: offset + 4 + consumed, sectionTag: tag,
                detail: "\(stream.count - consumed) bytes after the end of the zlib stream")
        }
        return out
    }
}
