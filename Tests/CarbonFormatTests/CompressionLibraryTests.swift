import CarbonModel
import CarbonStoreTestSupport
import Testing

@testable import CarbonFormat

/// Sections are zlib streams whichever library writes them: libdeflate (when its shared library is
/// found at run time) and zlib read each other's streams, with the same checks.
@Suite struct CompressionLibraryTests {
    static var payloads: [[UInt8]] {
        let codec = RecordCodec(options: .init(compression: .none))
        let w1 = codec.encode(RecordGenerator.workload(.w1, seed: 7), fileID: WriteID(high: 1, low: 2))
        var rng = SeededRandom(seed: 9)
        let noise = (0..<5_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        return [w1, Array(repeating: 0x41, count: 100_000), noise, [7]]
    }

    static func body(_ payload: [UInt8], _ stream: [UInt8]) -> [UInt8] {
        var out = withUnsafeBytes(of: UInt32(payload.count).littleEndian) { Array($0) }
        out += stream
        return out
    }

    @Test func eachLibraryInflatesTheOthersStreams() throws {
        guard let lib = Libdeflate.shared else {
            // Without libdeflate there is one library: nothing to cross.
            #expect(RecordCodec.compressionLibrary == "zlib")
            return
        }
        #expect(RecordCodec.compressionLibrary == "libdeflate")
        for payload in Self.payloads {
            for level: Int32 in [1, 6, 9] {
                let byLib = try #require(
                    payload.withUnsafeBytes { RecordCodec.deflate($0, level: level, library: lib) })
                let byZlib = try #require(
                    payload.withUnsafeBytes { RecordCodec.deflate($0, level: level, library: nil) })
                for (stream, reader) in [(byLib, nil), (byZlib, lib), (byLib, lib), (byZlib, nil)]
                    as [([UInt8], Libdeflate?)]
                {
                    let body = Self.body(payload, stream)
                    let out = try body.withUnsafeBytes {
                        try RecordCodec.inflate($0, offset: 0, tag: 1, maxRatio: 1032, library: reader)
                    }
                    #expect(out == payload)
                }
            }
        }
    }

    @Test func bothLibrariesRefuseTheSameDamage() throws {
        let payload = Self.payloads[0]
        let stream = try #require(payload.withUnsafeBytes { RecordCodec.deflate($0, level: 1, library: nil) })
        let readers: [Libdeflate?] = Libdeflate.shared.map { [nil, $0] } ?? [nil]
        for reader in readers {
            // A flipped byte in the stream, a stream cut short, a wrong declared length, a byte after
            // the stream: each is an error, never a wrong payload.
            var flipped = stream
            flipped[stream.count / 2] ^= 0x55
            let cases: [(String, [UInt8])] = [
                ("flipped", Self.body(payload, flipped)),
                ("cut", Self.body(payload, Array(stream.dropLast(9)))),
                ("declared shorter", Self.body(Array(payload.dropLast()), stream)),
                ("declared longer", Self.body(payload + [0], stream)),
                ("trailing byte", Self.body(payload, stream + [0])),
            ]
            for (name, body) in cases {
                #expect(throws: FormatError.self, "\(name), \(reader == nil ? "zlib" : "libdeflate")") {
                    try body.withUnsafeBytes {
                        try RecordCodec.inflate($0, offset: 0, tag: 1, maxRatio: 1032, library: reader)
                    }
                }
            }
        }
    }
}
