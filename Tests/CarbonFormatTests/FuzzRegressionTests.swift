import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonFormat

/// Replays the fuzzer's seed corpus (Fuzz/corpus) and every input it ever found a problem with
/// (Tests/CarbonFormatTests/FuzzRegressions) through the same checks as Fuzz/DecoderFuzzer.swift.
@Suite struct FuzzRegressionTests {
    static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let corpusDirectory = testsDirectory.appendingPathComponent("../../Fuzz/corpus").standardized
    static let regressionsDirectory = testsDirectory.appendingPathComponent("FuzzRegressions")

    static func files(in directory: URL) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension != "md" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    /// Decodes `bytes` (never crashing); if it decodes, checks the header and the round trips.
    /// Returns whether it decoded.
    @discardableResult
    static func check(_ bytes: [UInt8], _ name: String) -> Bool {
        #expect(decoderPropertyViolation(bytes) == nil, "\(name)")
        return (try? RecordCodec().decode(bytes)) != nil
    }

    @Test func seedCorpusDecodesAndRoundTrips() throws {
        let files = try Self.files(in: Self.corpusDirectory)
        #expect(files.count >= 15, "seed corpus missing at \(Self.corpusDirectory.path)")
        for file in files {
            let bytes = [UInt8](try Data(contentsOf: file))
            let name = file.lastPathComponent
            let decoded = Self.check(bytes, name)
            #expect(decoded == name.hasPrefix("valid-"), "\(name)")
            if name.hasPrefix("valid-") {
                // Re-encoding an uncompressed file gives the same bytes (FORMAT.md §6; zlib's own
                // output may differ between zlib versions, so compressed files are not compared).
                let (record, layout) = try RecordCodec().decodeFile(bytes)
                let raw = RecordCodec(options: .init(compression: .none))
                if try !RecordCodec.layout(of: bytes).sections.contains(where: \.isCompressed),
                    layout.frameCount == 0,
                    layout.ignoredLength == 0
                {
                    let again =
                        layout.fileID.map { raw.encode(record, fileID: $0) } ?? raw.encodeVersion1(record)
                    #expect(again == bytes, "\(name)")
                }
            }
            Self.check(repairingChecksums(bytes), name + " (checksums repaired)")
        }
    }

    @Test func fuzzRegressionsNeverCrashTheDecoder() throws {
        #expect(
            FileManager.default.fileExists(
                atPath: Self.regressionsDirectory.appendingPathComponent("README.md").path))
        for file in try Self.files(in: Self.regressionsDirectory) {
            let bytes = [UInt8](try Data(contentsOf: file))
            Self.check(bytes, file.lastPathComponent)
            Self.check(repairingChecksums(bytes), file.lastPathComponent + " (checksums repaired)")
        }
    }
}
