import CarbonFormat
import CarbonModel

/// Reads every user file and reports the ones that do not decode.
public struct VerifyReport: Sendable {
    public struct Problem: Sendable, Hashable {
        public var location: String
        public var reason: String
    }

    /// Files that decoded cleanly.
    public var healthy = 0
    /// Files that did not, with why.
    public var damaged: [Problem] = []
    /// Files that decoded, with bytes after their last valid change frame that readers ignore and
    /// that can be one append torn by a crash (the next update cuts it). More than that (a damaged
    /// frame with bytes after it) is reported in `damaged`.
    public var ignoredTails: [Problem] = []
    /// Files that could not be read (permission denied, an I/O error), with the error: the scrub
    /// goes on past them, and they are neither healthy nor known to be damaged.
    public var unreadable: [Problem] = []
    /// The kind of the first read error in `unreadable` (`permissionDenied` for EACCES and EPERM).
    public var unreadableKind: ErrorKind?
    /// Temporary files left by writers that crashed (path: only).
    public var temporaryFiles: [PathStorage.TemporaryFile] = []
    /// Temporary files removed because they were older than the given age.
    public var removedTemporaryFiles: [PathStorage.TemporaryFile] = []

    public var isHealthy: Bool { damaged.isEmpty }
}

extension Store {
    /// Decodes every file under the store's prefix. With `removeTemporaryFilesOlderThan`, also
    /// removes crashed writers' temporary files of at least that age (path: only).
    public func verify(
        removeTemporaryFilesOlderThan age: Duration? = nil, pageSize: Int = 1000,
        progress: (@Sendable (Int) -> Void)? = nil
    ) async throws -> VerifyReport {
        // Only `path:` has temporary files to remove: elsewhere `age` asks for nothing.
        if age != nil, options.readOnly, storage is PathStorage {
            throw ReadOnlyStoreError(location: storage.location(of: keys.prefix))
        }
        var report = VerifyReport()
        var cursor: String?
        repeat {
            let page = try await storage.list(prefix: keys.prefix, startAfter: cursor, limit: pageSize)
            for key in page.keys {
                let location = storage.location(of: key)
                guard let userID = keys.userID(forKey: key) else {
                    // A user's file moved or copied into another user's folder by hand.
                    let reason =
                        keys.misplacedUserID(forKey: key).map { misplaced in
                            "the file is named for user '\(DisplayText.escaped(misplaced.userID))', whose file belongs at \(storage.location(of: misplaced.expectedKey)), not in this folder: move it there if nothing is there, or remove it"
                        } ?? "the file name is not one CarbonStore writes"
                    report.damaged.append(.init(location: location, reason: reason))
                    continue
                }
                do {
                    // Deleted meanwhile: nothing to check.
                    guard let object = try await storage.get(key),
                        let decoded = try await decodeConfirmingDamage(object, userID: userID, key: key)
                    else { continue }
                    let (bytes, layout, tail) = (decoded.object.bytes, decoded.layout, decoded.tail)
                    if tail.isDamage {
                        let why = (try? RecordCodec.inspect(bytes).ignoredReason).flatMap { $0 }
                        report.damaged.append(
                            .init(
                                location: location,
                                reason:
                                    "\(layout.ignoredLength) bytes after offset \(layout.validLength) are \(IgnoredTail.damageExplanation)"
                                    + (why.map { " (\($0))" } ?? "")))
                        continue
                    }
                    report.healthy += 1
                    // Zero bytes alone are the reserve that appends on a volume write into.
                    if tail == .tornAppend {
                        let why = (try? RecordCodec.inspect(bytes).ignoredReason).flatMap { $0 }
                        report.ignoredTails.append(
                            .init(
                                location: location,
                                reason:
                                    "\(layout.ignoredLength) bytes after offset \(layout.validLength) are ignored"
                                    + (why.map { " (\($0))" } ?? "")))
                    }
                } catch let error as CorruptUserFileError {
                    report.damaged.append(.init(location: location, reason: error.reason))
                } catch let error as FileTooLargeError {
                    report.damaged.append(
                        .init(
                            location: location,
                            reason: "\(error.size) bytes, over the \(error.limit)-byte limit"))
                } catch let error as UnsafePathError {
                    report.damaged.append(.init(location: location, reason: error.reason))
                } catch let error as StorageIOError {
                    // One file this process may not read, or that the disk fails to read: the
                    // others are still checked (damage past it must not stay hidden).
                    report.unreadable.append(.init(location: location, reason: error.description))
                    if report.unreadableKind == nil { report.unreadableKind = error.kind }
                }
            }
            progress?(report.healthy + report.damaged.count + report.unreadable.count)
            cursor = page.nextStartAfter
        } while cursor != nil
        if let path = storage as? PathStorage {
            if let age { report.removedTemporaryFiles = try path.removeTemporaryFiles(olderThan: age) }
            let tree = try path.scanTree()
            report.temporaryFiles = tree.temporary
            for entry in tree.unexpected {
                report.damaged.append(
                    .init(
                        location: entry,
                        reason:
                            "not a regular file or folder of CarbonStore's (a symbolic link, FIFO, device, or a folder named like a user file); remove or replace it"
                    ))
            }
        }
        return report
    }
}
