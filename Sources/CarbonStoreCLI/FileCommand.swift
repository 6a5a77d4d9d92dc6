import ArgumentParser
import CarbonFormat
import CarbonModel
import CarbonStore

struct FileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "file", abstract: "Work with user files directly.",
        subcommands: [Inspect.self, Verify.self])

    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decode a user file to JSON, or explain why it is damaged (exit code 5).")
        @Argument(help: "Path of a .cstore file.") var path: String

        func run() async throws {
            try await runReportingErrors {
                let codec = RecordCodec()
                // One byte more than the limit is enough for the codec to refuse an oversized file.
                let bytes = try readFile(path, maximumSize: codec.limits.maxFileSize)
                do {
                    let (record, layout) = try codec.decodeFile(bytes)
                    print(try RecordJSON.encode(record))
                    let tail = bytes[layout.validLength...].withUnsafeBytes {
                        RecordCodec.classifyTail($0, at: layout.validLength)
                    }
                    // Zero bytes alone are the reserve that appends on a volume write into.
                    if tail == .tornAppend || tail == .damaged,
                        let note = Verify.tailNote(tail, layout: layout, reason: nil)
                    {
                        printError(
                            "\(tail.isDamage ? "damaged" : "note"): \(path): ignored tail of \(note); see 'file verify'"
                        )
                    }
                    // The record printed is the one before the damage: the file is still damaged.
                    if tail.isDamage { throw ExitCode(5) }
                } catch let error as FormatError {
                    printError("\(path) is not a valid user file: \(error.description)")
                    throw ExitCode(5)
                }
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Check a user file and list its parts: header, sections, change frames and any ignored (torn) tail (exit code 5 if damaged)."
        )
        @Argument(help: "Path of a .cstore file.") var path: String

        func run() async throws {
            try await runReportingErrors {
                let codec = RecordCodec()
                let bytes = try readFile(path, maximumSize: codec.limits.maxFileSize)
                do {
                    let report = try RecordCodec.inspect(bytes)
                    let (record, layout) = try codec.decodeFile(bytes)
                    let tail = bytes[layout.validLength...].withUnsafeBytes {
                        RecordCodec.classifyTail($0, at: layout.validLength)
                    }
                    for line in Self.describe(
                        report, record: record, layout: layout, size: bytes.count, tail: tail)
                    {
                        print(line)
                    }
                    if tail.isDamage { throw ExitCode(5) }
                } catch let error as FormatError {
                    printError("\(path) is not a valid user file: \(error.description)")
                    throw ExitCode(5)
                }
            }
        }

        static func describe(
            _ report: FileReport, record: UserRecord, layout: FileLayout, size: Int, tail: IgnoredTail
        ) -> [String] {
            let h = report.header
            var lines = [
                "format version \(h.formatVersion), \(size) bytes, user \(h.userID)"
                    + (h.fileID.map { ", file id \($0)" } ?? ""),
                "snapshot: \(layout.snapshotLength) bytes, revision \(h.revision), \(h.sectionCount) sections",
            ]
            for s in report.sections {
                lines.append(
                    "  section \(s.name) (tag \(s.tag)) at \(s.offset): \(s.storedLength) bytes"
                        + (s.isCompressed ? " (\(s.isZstd ? "zstd" : "zlib"), \(s.rawLength) inflated)" : "")
                        + ", crc \(hexString(s.checksum))")
            }
            lines.append("frames: \(report.frames.count), \(layout.tailLength) bytes")
            for (i, f) in report.frames.enumerated() {
                let parts = f.parts.map { "\($0.name) \($0.length) bytes" }.joined(separator: ", ")
                lines.append(
                    "  frame \(i + 1) at \(f.offset): \(f.length) bytes, revision \(f.revision), id \(f.id)"
                        + (parts.isEmpty ? ", no parts" : ", parts: \(parts)"))
            }
            lines.append(
                "ignored tail: " + (tailNote(tail, layout: layout, reason: report.ignoredReason) ?? "none"))
            let counts =
                "revision \(record.revision), \(record.transactions.count) transactions, \(record.responses.count) responses, \(record.preferences.count) preferences, \(record.footprints.count) footprints, \(record.savings.count) savings"
            lines.append(
                tail.isDamage
                    ? "record: \(counts), as it was before the ignored tail: damaged (exit code 5): restore the user from a backup, or cut the damaged bytes by hand once you know what they held"
                    : "record: \(counts): ok")
            return lines
        }

        /// What a file's ignored tail is, in words (nil when there is none), with the codec's
        /// reason for ignoring it when known.
        static func tailNote(_ tail: IgnoredTail, layout: FileLayout, reason: String?) -> String? {
            let bytes = "\(layout.ignoredLength) bytes at offset \(layout.validLength)"
            let why = reason.map { "; \($0)" } ?? ""
            switch tail {
            case .none:
                return nil
            case .reserve:
                return
                    "\(layout.ignoredLength) zero bytes at offset \(layout.validLength) (a reserve for the next appends)"
            case .tornAppend:
                return "\(bytes) (a torn append, never acknowledged: the next update cuts it\(why))"
            case .damaged:
                return
                    "\(bytes) are not one torn append: a damaged change frame or other bytes, which may be or hide acknowledged changes\(why)"
            }
        }
    }
}

/// A file named to a `file` command that does not exist (exit code 3, as for a missing user).
struct FileNotFoundError: CarbonStoreError, Hashable {
    var path: String
    var kind: ErrorKind { .notFound }
    var description: String {
        "\(path) does not exist: give the path of a user file (a .cstore file under the data directory)"
    }
}

/// The file's bytes; a file larger than `maximumSize` (the engine's limit) is refused with its size,
/// unread, as the engine refuses it. (One that grows past it while it is read is read to one byte
/// more, which the decoder refuses.)
func readFile(_ path: String, maximumSize: Int) throws -> [UInt8] {
    // Non-blocking, and regular files only: a FIFO or a device must not hang the command.
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else {
        let code = errno
        if code == ENOENT { throw FileNotFoundError(path: path) }
        throw StorageIOError(operation: "open", path: path, errno: code)
    }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
        throw InvalidRequestError("\(path) is not a regular file; 'file inspect' reads user files")
    }
    if Int64(st.st_size) > Int64(maximumSize) {
        throw FileTooLargeError(path: path, size: Int64(st.st_size), limit: Int64(maximumSize))
    }
    return try PathStorage.readAll(fd, sizeHint: Int(st.st_size), limit: maximumSize + 1, path: path)
}

#if canImport(Glibc)
    import Glibc
#endif
