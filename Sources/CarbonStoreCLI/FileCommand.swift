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
                let bytes = try readFile(path, atMost: codec.limits.maxFileSize + 1)
                do {
                    let (record, layout) = try codec.decodeFile(bytes)
                    print(try RecordJSON.encode(record))
                    // Zero bytes alone are the reserve that appends on a volume write into.
                    if layout.ignoredLength > 0,
                        !bytes[layout.validLength...].withUnsafeBytes({ RecordCodec.isReserve($0) })
                    {
                        printError(
                            "note: \(path) ends with \(layout.ignoredLength) ignored bytes at offset \(layout.validLength) (a torn append); see 'file verify'"
                        )
                    }
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
                let bytes = try readFile(path, atMost: codec.limits.maxFileSize + 1)
                do {
                    let report = try RecordCodec.inspect(bytes)
                    let (record, layout) = try codec.decodeFile(bytes)
                    let reserve = bytes[layout.validLength...].withUnsafeBytes { RecordCodec.isReserve($0) }
                    for line in Self.describe(
                        report, record: record, layout: layout, size: bytes.count, tailIsZero: reserve)
                    {
                        print(line)
                    }
                } catch let error as FormatError {
                    printError("\(path) is not a valid user file: \(error.description)")
                    throw ExitCode(5)
                }
            }
        }

        static func describe(
            _ report: FileReport, record: UserRecord, layout: FileLayout, size: Int, tailIsZero: Bool
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
            if layout.ignoredLength > 0, tailIsZero {
                lines.append(
                    "ignored tail: \(layout.ignoredLength) zero bytes at \(layout.validLength) (a reserve for the next appends)"
                )
            } else if layout.ignoredLength > 0 {
                lines.append(
                    "ignored tail: \(layout.ignoredLength) bytes at \(layout.validLength) (\(report.ignoredReason ?? "not a frame"))"
                )
            } else {
                lines.append("ignored tail: none")
            }
            lines.append(
                "record: revision \(record.revision), \(record.transactions.count) transactions, \(record.responses.count) responses, \(record.preferences.count) preferences, \(record.footprints.count) footprints, \(record.savings.count) savings: ok"
            )
            return lines
        }
    }
}

/// The file's first `limit` bytes (all of it if it is shorter).
func readFile(_ path: String, atMost limit: Int) throws -> [UInt8] {
    // Non-blocking, and regular files only: a FIFO or a device must not hang the command.
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { throw StorageIOError(operation: "open", path: path, errno: errno) }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
        throw InvalidRequestError("\(path) is not a regular file; 'file inspect' reads user files")
    }
    return try PathStorage.readAll(fd, sizeHint: Int(st.st_size), limit: limit, path: path)
}

#if canImport(Glibc)
    import Glibc
#endif
