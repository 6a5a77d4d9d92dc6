import CZlib

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// Compressed sections hold a zlib stream (RFC 1950: a deflate stream with an Adler-32), as
// docs/FORMAT.md says. zlib writes and reads them everywhere. Where the system has libdeflate's
// shared library (Debian's `libdeflate0`, found at run time: nothing is needed to build), it writes
// and reads the same streams two to three times faster; its streams are inflated by any zlib
// reader and it inflates any zlib writer's streams, so which one a process uses changes no byte
// that a reader relies on (only which deflate encoding a writer picks, as zlib versions may).

/// libdeflate's whole-buffer zlib functions, looked up in its shared library at run time.
struct Libdeflate: @unchecked Sendable {
    typealias AllocCompressor = @convention(c) (Int32) -> OpaquePointer?
    typealias CompressBound = @convention(c) (OpaquePointer?, Int) -> Int
    typealias Compress =
        @convention(c) (OpaquePointer?, UnsafeRawPointer?, Int, UnsafeMutableRawPointer?, Int) -> Int
    typealias FreeCompressor = @convention(c) (OpaquePointer?) -> Void
    typealias AllocDecompressor = @convention(c) () -> OpaquePointer?
    typealias DecompressEx =
        @convention(c) (
            OpaquePointer?, UnsafeRawPointer?, Int, UnsafeMutableRawPointer?, Int, UnsafeMutablePointer<Int>?,
            UnsafeMutablePointer<Int>?
        ) -> Int32
    typealias FreeDecompressor = @convention(c) (OpaquePointer?) -> Void

    let allocCompressor: AllocCompressor
    let compressBound: CompressBound
    let compress: Compress
    let freeCompressor: FreeCompressor
    let allocDecompressor: AllocDecompressor
    let decompress: DecompressEx
    let freeDecompressor: FreeDecompressor

    /// `enum libdeflate_result`.
    static let success: Int32 = 0
    static let badData: Int32 = 1
    static let insufficientSpace: Int32 = 3

    /// The library, or nil where it is not installed (then zlib does the work).
    static let shared: Libdeflate? = load()

    static func load() -> Libdeflate? {
        #if canImport(Darwin)
            let names = ["libdeflate.0.dylib", "libdeflate.dylib"]
        #else
            let names = ["libdeflate.so.0", "libdeflate.so"]
        #endif
        return SharedLibrary.first(of: names) { lib in
            guard let a = lib.symbol("libdeflate_alloc_compressor", AllocCompressor.self),
                let b = lib.symbol("libdeflate_zlib_compress_bound", CompressBound.self),
                let c = lib.symbol("libdeflate_zlib_compress", Compress.self),
                let d = lib.symbol("libdeflate_free_compressor", FreeCompressor.self),
                let e = lib.symbol("libdeflate_alloc_decompressor", AllocDecompressor.self),
                let f = lib.symbol("libdeflate_zlib_decompress_ex", DecompressEx.self),
                let g = lib.symbol("libdeflate_free_decompressor", FreeDecompressor.self)
            else { return nil }
            return Libdeflate(
                allocCompressor: a, compressBound: b, compress: c, freeCompressor: d, allocDecompressor: e,
                decompress: f, freeDecompressor: g)
        }
    }
}

/// A shared library opened with `dlopen` (libdeflate, libzstd: found at run time, so that nothing
/// is needed to build), or the libraries already loaded (`loaded`).
package struct SharedLibrary {
    /// nil for `loaded` (`RTLD_DEFAULT`).
    let handle: UnsafeMutableRawPointer?

    /// The functions of the libraries the process has loaded, the C library among them: for the
    /// functions the Swift overlay of Glibc does not export (`statx`, `fstatfs`, `getrandom`).
    package static var loaded: SharedLibrary { SharedLibrary(handle: nil) }

    /// The C function `name` of the library, as `T`.
    package func symbol<T>(_ name: String, _: T.Type) -> T? {
        dlsym(handle, name).map { unsafeBitCast($0, to: T.self) }
    }

    /// What `resolve` makes of the first of `names` that opens and in which it finds every symbol
    /// it needs; a library it refuses is closed again. nil if none.
    static func first<T>(of names: [String], _ resolve: (SharedLibrary) -> T?) -> T? {
        for name in names {
            guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else { continue }
            if let found = resolve(SharedLibrary(handle: handle)) { return found }
            dlclose(handle)
        }
        return nil
    }
}

extension RecordCodec {
    /// Which library compresses and inflates sections in this process: both read and write the
    /// same zlib streams (`"libdeflate"` where its shared library was found, else `"zlib"`).
    public static var compressionLibrary: String { Libdeflate.shared == nil ? "zlib" : "libdeflate" }

    /// The zlib stream (RFC 1950) of `input` at `level` (zlib's scale: 1 fastest, 6 default,
    /// 9 smallest; -1 means 6), or nil if it could not be produced. `library` picks libdeflate
    /// (where present) or zlib; tests cross them.
    static func deflate(
        _ input: UnsafeRawBufferPointer, level: Int32, library: Libdeflate? = Libdeflate.shared
    )
        -> [UInt8]?
    {
        let level = level < 0 ? 6 : min(9, level)
        guard let lib = library else { return zlibDeflate(input, level: level) }
        guard let src = input.baseAddress else { return nil }
        guard let compressor = lib.allocCompressor(level) else { return nil }
        defer { lib.freeCompressor(compressor) }
        let bound = lib.compressBound(compressor, input.count)
        let out = [UInt8](unsafeUninitializedCapacity: bound) { buffer, initialized in
            initialized = lib.compress(compressor, src, input.count, buffer.baseAddress, bound)
        }
        return out.isEmpty ? nil : out
    }

    static func zlibDeflate(_ input: UnsafeRawBufferPointer, level: Int32) -> [UInt8]? {
        guard let src = input.baseAddress?.assumingMemoryBound(to: Bytef.self) else { return nil }
        let bound = Int(compressBound(uLong(input.count)))
        var destLength = uLongf(bound)
        var status = Z_OK
        let out = [UInt8](unsafeUninitializedCapacity: bound) { buffer, initialized in
            status = compress2(buffer.baseAddress, &destLength, src, uLong(input.count), level)
            initialized = status == Z_OK ? Int(destLength) : 0
        }
        return status == Z_OK ? out : nil
    }

    /// Inflates a compressed section body (u32 raw length, then a zlib stream) after checking the
    /// declared length against what deflate can produce and `maxRatio`, into a buffer of exactly
    /// the declared length (inflation stops there), and checks the output is exactly that long
    /// and the stream ends exactly at the end of the body. The Adler-32 of the stream is checked.
    /// The caller has checked the declared length against the decoded-size limit.
    static func inflate(
        _ body: UnsafeRawBufferPointer, offset: Int, tag: UInt16, maxRatio: Int,
        library: Libdeflate? = Libdeflate.shared
    ) throws(FormatError) -> [UInt8] {
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
        let (out, produced, consumed) =
            if let library {
                try libdeflateInflate(library, src, stream.count, rawLength, offset: offset, tag: tag)
            } else {
                try zlibInflate(src, stream.count, rawLength, offset: offset, tag: tag)
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

    /// Decompresses a zstd section body (u32 raw length, then one zstd frame, version 3) after the
    /// checks of docs/FORMAT.md §4: the declared length against `maxRatio`, the frame's magic, its
    /// extent (one frame ending exactly at the end of the body), its declared content size and
    /// dictionary; then into a buffer of exactly the declared length, which it must fill. The
    /// caller has checked the declared length against the decoded-size limit.
    static func unzstd(
        _ body: UnsafeRawBufferPointer, offset: Int, tag: UInt16, maxRatio: Int, library: Zstd? = Zstd.shared
    ) throws(FormatError) -> [UInt8] {
        let rawLength = Int(body.loadUnaligned(as: UInt32.self).littleEndian)
        let frame = UnsafeRawBufferPointer(rebasing: body[4...])
        func failed(_ detail: String, at position: Int = offset + 4) -> FormatError {
            FormatError(.decompressionFailed, offset: position, sectionTag: tag, detail: detail)
        }
        guard rawLength >= 1 else {
            throw FormatError(
                .malformed, offset: offset, sectionTag: tag, detail: "compressed section of raw length 0")
        }
        guard rawLength <= frame.count * max(maxRatio, 0) else {
            throw FormatError(
                .limitExceeded, offset: offset, sectionTag: tag,
                detail:
                    "raw length \(rawLength) is more than \(maxRatio) times the \(frame.count) compressed bytes (RecordCodec.Limits.maxCompressionRatio)"
            )
        }
        guard frame.count >= Zstd.frameMagic.count, frame.prefix(4).elementsEqual(Zstd.frameMagic),
            let src = frame.baseAddress
        else {
            throw failed("the body does not start a zstd frame (magic 28 b5 2f fd)")
        }
        guard let zstd = library else {
            throw FormatError(
                .unsupportedFeature, offset: offset - 8, sectionTag: tag,
                detail:
                    "the section is compressed with zstd and libzstd's shared library (libzstd.so.1) is not installed; install it (Debian: apt-get install libzstd1)"
            )
        }
        let f = zstd.functions
        let extent = f.frameCompressedSize(src, frame.count)
        guard f.isError(extent) == 0 else {
            throw failed("the zstd frame is corrupt or cut short (\(zstd.errorName(extent)))")
        }
        guard extent == frame.count else {
            throw FormatError(
                .trailingBytes, offset: offset + 4 + extent, sectionTag: tag,
                detail: "\(frame.count - extent) bytes after the end of the zstd frame")
        }
        guard f.dictID(src, frame.count) == 0 else {
            throw failed("the zstd frame needs a dictionary, which the format does not have")
        }
        let declared = f.frameContentSize(src, frame.count)
        guard declared == Zstd.contentSizeUnknown || declared == UInt64(rawLength) else {
            throw failed(
                declared == Zstd.contentSizeError
                    ? "the zstd frame header is corrupt"
                    : "the zstd frame declares \(declared) bytes, the section \(rawLength)")
        }
        switch zstd.decompress(src, frame.count, capacity: rawLength) {
        case .failure(let failure):
            throw failed(
                "the zstd frame is corrupt, or gives more than the declared \(rawLength) bytes (\(failure.reason))"
            )
        case .success(let out):
            guard out.count == rawLength else {
                throw failed("decompressed to \(out.count) bytes, declared \(rawLength)")
            }
            return out
        }
    }

    private static func libdeflateInflate(
        _ lib: Libdeflate, _ src: UnsafeRawPointer, _ count: Int, _ rawLength: Int, offset: Int, tag: UInt16
    ) throws(FormatError) -> ([UInt8], produced: Int, consumed: Int) {
        guard let decompressor = lib.allocDecompressor() else {
            throw FormatError(
                .decompressionFailed, offset: offset + 4, sectionTag: tag, detail: "out of memory")
        }
        defer { lib.freeDecompressor(decompressor) }
        var consumed = 0
        var produced = 0
        var status = Libdeflate.success
        let out = [UInt8](unsafeUninitializedCapacity: rawLength) { buffer, initialized in
            status = lib.decompress(
                decompressor, src, count, buffer.baseAddress, rawLength, &consumed, &produced)
            initialized = status == Libdeflate.success ? produced : 0
        }
        guard status == Libdeflate.success else {
            let reason =
                switch status {
                case Libdeflate.insufficientSpace:
                    "the data inflates to more than the declared \(rawLength) bytes"
                case Libdeflate.badData: "the zlib stream is corrupt or cut short"
                default: "inflate error \(status)"
                }
            throw FormatError(.decompressionFailed, offset: offset + 4, sectionTag: tag, detail: reason)
        }
        return (out, produced, consumed)
    }

    private static func zlibInflate(
        _ src: UnsafeRawPointer, _ count: Int, _ rawLength: Int, offset: Int, tag: UInt16
    ) throws(FormatError) -> ([UInt8], produced: Int, consumed: Int) {
        var destLength = uLongf(rawLength)
        var sourceLength = uLong(count)
        var status = Z_OK
        let out = [UInt8](unsafeUninitializedCapacity: rawLength) { buffer, initialized in
            status = uncompress2(
                buffer.baseAddress, &destLength, src.assumingMemoryBound(to: Bytef.self), &sourceLength)
            initialized = status == Z_OK ? Int(destLength) : 0
        }
        guard status == Z_OK else {
            let reason =
                switch status {
                case Z_BUF_ERROR:
                    "the data inflates to more than the declared \(rawLength) bytes, or is cut short"
                case Z_DATA_ERROR: "the zlib stream is corrupt"
                case Z_MEM_ERROR: "out of memory"
                default: "zlib error \(status)"
                }
            throw FormatError(.decompressionFailed, offset: offset + 4, sectionTag: tag, detail: reason)
        }
        return (out, Int(destLength), Int(sourceLength))
    }
}
