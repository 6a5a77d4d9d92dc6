import CarbonFormat
import Foundation

/// Writes bytes into a user file where a crash in the middle of an append would have left them: at
/// the end of the file's valid content, over the zero bytes an earlier append reserved there (or
/// at the end of the file when it has no reserve). For tests of torn and stray tails.
public enum TornAppend {
    public struct NotAUserFile: Error, CustomStringConvertible {
        public var path: String
        public var description: String { "\(path) is not a version-2 or version-3 user file" }
    }

    /// Writes `bytes` at the valid end of the user file at `path`; returns that offset.
    @discardableResult
    public static func write(_ bytes: [UInt8], intoUserFileAt path: String) throws -> Int {
        let contents = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let layout = try contents.withUnsafeBytes { try RecordCodec().scanLayout($0) }
        guard layout.formatVersion >= 2 else { throw NotAUserFile(path: path) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(layout.validLength))
        try handle.write(contentsOf: Data(bytes))
        return layout.validLength
    }
}
