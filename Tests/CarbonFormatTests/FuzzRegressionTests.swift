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
        let header = try? RecordCodec.readHeader(bytes)
        let record: UserRecord
        do {
            record = try RecordCodec().decode(bytes)
        } catch {
            #expect(!error.description.isEmpty)
            return false
        }
        #expect(header?.userID.utf8.elementsEqual(record.userID.utf8) == true, "\(name)")
        #expect(header?.revision == record.revision, "\(name)")
        for codec in [
            RecordCodec(), RecordCodec(options: .init(compression: .none)),
            RecordCodec(options: .init(compression: .zlib(level: 9), compressionThreshold: 0)),
        ] {
            let encoded = codec.encode(record)
            let again = try? codec.decode(encoded)
            #expect(again != nil, "\(name): the re-encoded record does not decode")
            if let again, again != record {
                #expect(
                    hasNaNAnswer(record) && codec.encode(again) == encoded, "\(name): round trip changed it")
            }
        }
        return true
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
                let record = try RecordCodec().decode(bytes)
                if try !RecordCodec.layout(of: bytes).sections.contains(where: \.isCompressed) {
                    #expect(
                        RecordCodec(options: .init(compression: .none)).encode(record) == bytes, "\(name)")
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
