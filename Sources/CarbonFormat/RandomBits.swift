#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// 128 bits from the system's cryptographically secure random number generator, asked for in one
/// request: `SystemRandomNumberGenerator` asks the kernel once per 64-bit word, and every update
/// takes two 128-bit ids (the lock's operation id and the written frame's id).
public enum RandomBits {
    /// Two fresh 64-bit words.
    public static func pair() -> (UInt64, UInt64) {
        var words: (UInt64, UInt64) = (0, 0)
        #if canImport(Darwin)
            withUnsafeMutableBytes(of: &words) { arc4random_buf($0.baseAddress, $0.count) }
            return words
        #else
            #if os(Linux)
                if let getrandom = Self.getrandom,
                    withUnsafeMutableBytes(of: &words, { getrandom($0.baseAddress, $0.count, 0) }) == 16
                {
                    return words
                }
            #endif
            // No `getrandom` in the C library, or it answered short (interrupted): the standard
            // generator, which reads the same source.
            var generator = SystemRandomNumberGenerator()
            return (generator.next(), generator.next())
        #endif
    }

    #if os(Linux)
        /// The C library's `getrandom` (glibc 2.25 and later), which the Swift overlay of Glibc does
        /// not export (`sys/random.h`); nil if it cannot be found.
        static let getrandom = SharedLibrary.loaded.symbol(
            "getrandom", (@convention(c) (UnsafeMutableRawPointer?, Int, UInt32) -> Int).self)
    #endif
}
