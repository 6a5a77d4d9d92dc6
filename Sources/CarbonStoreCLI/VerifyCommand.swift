import ArgumentParser
import CarbonFormat
import CarbonModel
import CarbonStore

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract:
            "Decode every user file; report damaged ones and exit 5 if there are any (77 or 1 if some could not be read)."
    )
    @OptionGroup var storage: StorageOptions
    @Option(
        help: "Also remove temporary files of crashed writers older than this many minutes (path: only).")
    var removeTempOlderThan: Int?

    func run() async throws {
        try await runReportingErrors {
            if let minutes = removeTempOlderThan, !(0...5_256_000).contains(minutes) {
                throw InvalidRequestError(
                    "--remove-temp-older-than is a number of minutes from 0 to 5256000 (ten years), not \(minutes)"
                )
            }
            // Only removing temporary files writes (on `path:`); a data directory that does not
            // exist is found before a store that would write creates it.
            var store = try await storage.makeStore { $0.readOnly = true }
            if let path = store.storage as? PathStorage {
                guard path.rootExists else { throw DataDirectoryMissingError(path: path.root) }
                if removeTempOlderThan != nil { store = try await storage.makeStore() }
            } else if removeTempOlderThan != nil {
                throw InvalidRequestError(
                    "--remove-temp-older-than is for path: storage, whose writers leave temporary files when they crash; \(storage.uriText) has none"
                )
            }
            let report = try await store.verify(
                removeTemporaryFilesOlderThan: removeTempOlderThan.map { .seconds($0 * 60) })
            for p in report.damaged { print("damaged: \(p.location): \(p.reason)") }
            for p in report.unreadable { print("unreadable: \(p.location): \(p.reason)") }
            for p in report.ignoredTails {
                print("ignored tail: \(p.location): \(p.reason); the next update cuts it")
            }
            for t in report.removedTemporaryFiles {
                print("removed temporary file: \(t.path) (\(t.ageSeconds) s old)")
            }
            for t in report.temporaryFiles {
                print(
                    "temporary file: \(t.path) (\(t.ageSeconds) s old; remove with --remove-temp-older-than)")
            }
            print(
                "\(report.healthy) healthy, \(report.damaged.count) damaged"
                    + (report.unreadable.isEmpty ? "" : ", \(report.unreadable.count) unreadable"))
            if !report.damaged.isEmpty {
                printError("\(report.damaged.count) damaged user files; see above")
            } else if !report.unreadable.isEmpty {
                printError("\(report.unreadable.count) user files could not be read; see above")
            }
            if let code = report.failureExitCode { throw ExitCode(code) }
        }
    }
}

extension VerifyReport {
    /// The exit code a scrub ends with: 5 when a file is damaged, else that of the first file or
    /// folder that could not be read (77 for permissions, 1), else nil.
    var failureExitCode: Int32? {
        if !damaged.isEmpty { return 5 }
        return unreadableKind.map { exitCode(for: $0) }
    }
}
