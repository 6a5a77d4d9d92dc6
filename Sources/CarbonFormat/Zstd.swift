import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// Sections of a version-3 file may hold a zstd frame (RFC 8878) instead of a zlib stream
// (docs/FORMAT.md §4, "Compression"). zstd is looked up at run time in the system's shared library
// (Debian's `libzstd1`, which `dpkg` itself depends on; nothing is needed to build). Where it is
// missing, writers fall back to zlib (and so write version 2), and a reader refuses a zstd section
// with an error that names the library.

/// libzstd's one-shot functions, looked up in its shared library at run time, with a small pool of
/// compression and decompression contexts (a context serves one call at a time; making one costs
/// about as much as compressing a small section).
final class Zstd: Sendable {
    typealias CreateContext = @convention(c) () -> OpaquePointer?
    typealias FreeContext = @convention(c) (OpaquePointer?) -> Int
    typealias CompressBound = @convention(c) (Int) -> Int
    typealias Compress =
        @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int, UnsafeRawPointer?, Int, Int32) -> Int
    typealias Decompress =
        @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int, UnsafeRawPointer?, Int) -> Int
    typealias IsError = @convention(c) (Int) -> UInt32
    typealias ErrorName = @convention(c) (Int) -> UnsafePointer<CChar>?
    typealias FrameCompressedSize = @convention(c) (UnsafeRawPointer?, Int) -> Int
    typealias FrameContentSize = @convention(c) (UnsafeRawPointer?, Int) -> UInt64
    typealias DictID = @convention(c) (UnsafeRawPointer?, Int) -> UInt32
    typealias VersionString = @convention(c) () -> UnsafePointer<CChar>?

    /// The functions, as found in the library. `@unchecked`: C function pointers, immutable.
    struct Functions: @unchecked Sendable {
        let createCCtx: CreateContext
        let freeCCtx: FreeContext
        let compressBound: CompressBound
        let compress: Compress
        let createDCtx: CreateContext
        let freeDCtx: FreeContext
        let decompress: Decompress
        let isError: IsError
        let errorName: ErrorName
        let frameCompressedSize: FrameCompressedSize
        let frameContentSize: FrameContentSize
        let dictID: DictID
        let versionString: VersionString
    }

    /// A context owned by the pool; `@unchecked`: it is used by one call at a time.
    struct Context: @unchecked Sendable { let pointer: OpaquePointer }

    let functions: Functions
    /// The library's version, e.g. "1.5.4".
    let version: String
    private let compressors = Mutex<[Context]>([])
    private let decompressors = Mutex<[Context]>([])
    /// Contexts kept for reuse, of each kind; more concurrent calls make and free their own.
    static let pooled = 4

    /// A frame's first four bytes (RFC 8878 §3.1.1: 0xFD2FB528, little-endian).
    static let frameMagic: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]
    /// `ZSTD_CONTENTSIZE_UNKNOWN` and `ZSTD_CONTENTSIZE_ERROR`.
    static let contentSizeUnknown = UInt64.max
    static let contentSizeError = UInt64.max - 1

    init(functions: Functions) {
        self.functions = functions
        version = functions.versionString().map { String(cString: $0) } ?? "unknown"
    }

    deinit {
        for c in compressors.withLock({ $0 }) { _ = functions.freeCCtx(c.pointer) }
        for c in decompressors.withLock({ $0 }) { _ = functions.freeDCtx(c.pointer) }
    }

    /// The library, or nil where it is not installed.
    static let shared: Zstd? = load()

    static func load() -> Zstd? {
        #if canImport(Darwin)
            let names = ["libzstd.1.dylib", "libzstd.dylib"]
        #else
            let names = ["libzstd.so.1", "libzstd.so"]
        #endif
        return SharedLibrary.first(of: names) { lib in
            guard let createCCtx = lib.symbol("ZSTD_createCCtx", CreateContext.self),
                let freeCCtx = lib.symbol("ZSTD_freeCCtx", FreeContext.self),
                let compressBound = lib.symbol("ZSTD_compressBound", CompressBound.self),
                let compress = lib.symbol("ZSTD_compressCCtx", Compress.self),
                let createDCtx = lib.symbol("ZSTD_createDCtx", CreateContext.self),
                let freeDCtx = lib.symbol("ZSTD_freeDCtx", FreeContext.self),
                let decompress = lib.symbol("ZSTD_decompressDCtx", Decompress.self),
                let isError = lib.symbol("ZSTD_isError", IsError.self),
                let errorName = lib.symbol("ZSTD_getErrorName", ErrorName.self),
                let frameCompressedSize = lib.symbol(
                    "ZSTD_findFrameCompressedSize", FrameCompressedSize.self),
                let frameContentSize = lib.symbol("ZSTD_getFrameContentSize", FrameContentSize.self),
                let dictID = lib.symbol("ZSTD_getDictID_fromFrame", DictID.self),
                let versionString = lib.symbol("ZSTD_versionString", VersionString.self)
            else { return nil }
            return Zstd(
                functions: Functions(
                    createCCtx: createCCtx, freeCCtx: freeCCtx, compressBound: compressBound,
                    compress: compress, createDCtx: createDCtx, freeDCtx: freeDCtx,
                    decompress: decompress, isError: isError, errorName: errorName,
                    frameCompressedSize: frameCompressedSize, frameContentSize: frameContentSize,
                    dictID: dictID, versionString: versionString))
        }
    }

    /// Runs `body` with a context from `pool` (or a new one), and puts it back.
    private func withContext<R>(
        _ pool: borrowing Mutex<[Context]>, create: CreateContext, free: FreeContext,
        _ body: (OpaquePointer) -> R
    ) -> R? {
        let context = pool.withLock { $0.popLast() } ?? create().map(Context.init)
        guard let context else { return nil }
        let result = body(context.pointer)
        let kept = pool.withLock { contexts in
            guard contexts.count < Self.pooled else { return false }
            contexts.append(context)
            return true
        }
        if !kept { _ = free(context.pointer) }
        return result
    }

    /// The zstd frame of `input` at `level` (with its content size in the frame header, no
    /// checksum, no dictionary), or nil if it could not be produced.
    func compress(_ input: UnsafeRawBufferPointer, level: Int32) -> [UInt8]? {
        guard let src = input.baseAddress else { return nil }
        let f = functions
        let bound = f.compressBound(input.count)
        guard f.isError(bound) == 0 else { return nil }
        let out: [UInt8]?? = withContext(compressors, create: f.createCCtx, free: f.freeCCtx) { cctx in
            var failed = false
            let bytes = [UInt8](unsafeUninitializedCapacity: bound) { buffer, initialized in
                let n = f.compress(cctx, buffer.baseAddress, bound, src, input.count, level)
                failed = f.isError(n) != 0
                initialized = failed ? 0 : n
            }
            return failed ? nil : bytes
        }
        return out ?? nil
    }

    /// The reason libzstd gives for the error code `code`.
    func errorName(_ code: Int) -> String {
        functions.errorName(code).map { String(cString: $0) } ?? "error \(code)"
    }

    /// Decompresses `count` bytes at `src` (one whole frame, checked by the caller) into a buffer of
    /// exactly `capacity` bytes: the bytes produced, or libzstd's error code and reason.
    func decompress(_ src: UnsafeRawPointer, _ count: Int, capacity: Int) -> Result<[UInt8], ZstdFailure> {
        let f = functions
        let result: Result<[UInt8], ZstdFailure>? = withContext(
            decompressors, create: f.createDCtx, free: f.freeDCtx
        ) { (dctx) -> Result<[UInt8], ZstdFailure> in
            var code = 0
            let bytes = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
                code = f.decompress(dctx, buffer.baseAddress, capacity, src, count)
                initialized = f.isError(code) != 0 ? 0 : code
            }
            if f.isError(code) != 0 { return .failure(ZstdFailure(reason: errorName(code))) }
            return .success(bytes)
        }
        return result ?? .failure(ZstdFailure(reason: "out of memory (no decompression context)"))
    }
}

/// Why libzstd could not decompress a frame.
struct ZstdFailure: Error {
    var reason: String
}
