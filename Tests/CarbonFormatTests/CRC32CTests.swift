import Testing

@testable import CarbonFormat

@Suite struct CRC32CTests {
    /// Bit-at-a-time reference implementation.
    static func reference(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    static let vectors: [([UInt8], UInt32)] = [
        ([UInt8]("123456789".utf8), UInt32(0xE306_9283)),
        ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),  // RFC 3720 B.4
        ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ((0..<32).map { UInt8($0) }, 0x46DD_794E),
        ((0..<32).map { UInt8(31 - $0) }, 0x113F_DB5C),
        ([], 0),
        ([UInt8]("a".utf8), 0xC1D0_4330),
        ([UInt8]("The quick brown fox jumps over the lazy dog".utf8), 0x2262_0404),
    ]

    @Test(arguments: vectors)
    func knownVectors(input: [UInt8], expected: UInt32) {
        #expect(CRC32C.checksum(input) == expected)
        #expect(input.withUnsafeBytes { CRC32C.checksum($0) } == expected)
        #expect(CRC32C.checksum(AnySequence(input)) == expected, "non-contiguous sequence")
        #expect(Self.reference(input) == expected)
    }

    @Test func matchesReferenceAtEveryLengthAndAlignment() {
        var rng = SystemRandomNumberGenerator()
        let data = (0..<300).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for start in 0..<9 {
            for end in stride(from: start, through: data.count, by: 7) {
                let slice = Array(data[start..<end])
                #expect(CRC32C.checksum(data[start..<end]) == Self.reference(slice))
            }
        }
    }

    @Test func theInstructionAndTheTablesAgreeAtEveryLengthAndAlignment() {
        #if arch(x86_64) || arch(arm64)
            #expect(CRC32C.usesHardware, "every x86-64 server since 2008 has SSE 4.2")
        #endif
        var rng = SystemRandomNumberGenerator()
        let data = (0..<1100).map { _ in UInt8.random(in: 0...255, using: &rng) }
        data.withUnsafeBytes { all in
            for start in 0..<17 {
                for length in [0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 255, 1024, all.count - start] {
                    let part = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                    for seed: UInt32 in [0xFFFF_FFFF, 0, 0x1234_5678] {
                        let expected = CRC32C.software(seed, part)
                        #expect(CRC32C.raw(seed, part) == expected, "start \(start), length \(length)")
                        if seed == 0xFFFF_FFFF {
                            #expect(
                                ~expected == Self.reference(Array(part)), "start \(start), length \(length)")
                        }
                    }
                }
            }
        }
    }

    @Test func updateContinuesAChecksum() {
        let a = Array("12345".utf8)
        let b = Array("6789".utf8)
        #expect(CRC32C.update(CRC32C.checksum(a), with: b) == 0xE306_9283)
        #expect(CRC32C.update(0, with: a + b) == 0xE306_9283)
        #expect(b.withUnsafeBytes { CRC32C.update(CRC32C.checksum(a), with: $0) } == 0xE306_9283)
    }
}
