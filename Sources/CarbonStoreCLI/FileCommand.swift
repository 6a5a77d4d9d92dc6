import ArgumentParser
import CarbonFormat
import CarbonModel
import CarbonStore

struct FileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "file", abstract: "Work with user files directly.", subcommands: [Inspect.self])

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
                    let record = try codec.decode(bytes)
                    print(try RecordJSON.encode(record))
                } catch let error as FormatError {
                    printError("\(path) is not a valid user file: \(error.description)")
                    throw ExitCode(5)
                }
            }
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
