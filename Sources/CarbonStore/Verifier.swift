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

    /// Lists a file or folder at `location` that could not be read (`error`).
    mutating func setAside(_ location: String, _ error: StorageIOError) {
        unreadable.append(.init(location: location, reason: error.description))
        if unreadableKind == nil { unreadableKind = error.kind }
    }

    /// No file is damaged and every file could be read.
    public var isHealthy: Bool { damaged.isEmpty && unreadable.isEmpty }
}

extension Store {
    /// Why a file whose name is not where CarbonStore would keep it is reported, and what to do: a
    /// user's file moved or copied into another folder by hand is named with the record it holds
    /// and where that user's file belongs.
    func unexpectedName(_ key: String) async throws -> String {
        guard let misplaced = keys.misplacedUserID(forKey: key) else {
            return "the file name is not one CarbonStore writes"
        }
        let named = "the file is named for user '\(DisplayText.escaped(misplaced.userID))'"
        let home = storage.location(of: misplaced.expectedKey)
        // A file that may not be read is the caller's to report (`StorageIOError`).
        let bytes = try await storage.getBytes(key)
        guard let bytes, let decoded = try? options.codec.decodeFile(bytes) else {
            return "\(named), whose file belongs at \(home), but it is not in that folder and does not decode"
        }
        let record = decoded.record
        guard record.userID.utf8.elementsEqual(misplaced.userID.utf8) else {
            return
                "\(named) but holds the record of user '\(DisplayText.escaped(record.userID))' (revision \(record.revision)): a copy made by hand; compare it with that user's file (`carbonstore file inspect`) before removing it"
        }
        return
            "\(named) and holds that user's record (revision \(record.revision)), but belongs at \(home), not in this folder: if nothing is there, move it there; if a file is there, keep the one with the higher revision (`carbonstore file inspect`)"
    }

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
        // A folder that may not be read is reported once, and the scrub goes on past it.
        var unreadableFolders: Set<String> = []
        func setAside(_ error: StorageIOError) {
            guard unreadableFolders.insert(error.path).inserted else { return }
            report.setAside(error.path, error)
        }
        var cursor: String?
        repeat {
            let page: ObjectListing
            if let path = storage as? PathStorage {
                let (listing, unreadable) = try await path.listSkippingUnreadableFolders(
                    prefix: keys.prefix, startAfter: cursor, limit: pageSize)
                unreadable.forEach(setAside)
                page = listing
            } else {
                page = try await storage.list(prefix: keys.prefix, startAfter: cursor, limit: pageSize)
            }
            for key in page.keys {
                let location = storage.location(of: key)
                // A file of a store whose prefix is a sub-folder of this one's is checked as its
                // own store would check it.
                guard let userID = keys.userID(forKey: key) ?? keys.nestedUserID(forKey: key)?.userID else {
                    do {
                        report.damaged.append(
                            .init(location: location, reason: try await unexpectedName(key)))
                    } catch let error as StorageIOError {
                        report.setAside(location, error)
                    } catch {
                        // A link or a FIFO in its place, say.
                        report.damaged.append(.init(location: location, reason: String(describing: error)))
                    }
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
                    report.setAside(location, error)
                }
            }
            progress?(report.healthy + report.damaged.count + report.unreadable.count)
            cursor = page.nextStartAfter
        } while cursor != nil
        if let path = storage as? PathStorage {
            if let age { report.removedTemporaryFiles = try path.removeTemporaryFiles(olderThan: age) }
            let tree = try path.scanTree()
            tree.unreadable.forEach(setAside)
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
