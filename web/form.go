package web

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"artifactstore/internal/digest"
	"artifactstore/internal/manifest"
)

type spooled struct {
	file   manifest.File
	mem    []byte // small files stay in memory
	tmp    string // larger ones in a temporary file
	digest digest.Digest
}

// publishForm is the one-request publish for curl users:
//
//	curl -F 'manifest={"name":"app","version":"1.0","producer":"ci","retention_class":"release"}' \
//	     -F 'file=@build/app.tar.gz;filename=dist/app.tar.gz' http://host/v1/packages
//
// The "manifest" part comes first; every "file" part's filename is the
// file's path in the package (curl's ;filename= sets it). Each file is
// hashed while it is spooled (small ones in memory, larger ones to a
// temporary file), then published through the same begin/upload/commit
// steps as the staged protocol, all or nothing.
func (s *Server) publishForm(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > s.opts.MaxBodyBytes {
		s.fail(w, r, &http.MaxBytesError{Limit: s.opts.MaxBodyBytes})
		return
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		s.fail(w, r, newErr(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"a one-request publish is multipart/form-data with a manifest part and file parts; use /v1/uploads for the staged protocol"))
		return
	}
	// A form is an upload like any other: it takes one of the slots.
	release, ok := s.takeUploadSlot(w, r)
	if !ok {
		return
	}
	defer release()
	counted, _ := r.Body.(*countingBody)
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	// What the form holds in memory is charged to this request (at most
	// memSpoolBudget) and to every form together (server.form_memory_bytes).
	mem := &formMemory{global: s.formMem, left: memSpoolBudget}
	defer mem.release()
	buf := spoolBufs.Get().(*[]byte)
	defer spoolBufs.Put(buf)

	fail := func(err error) { s.fail(w, r, formError(r, counted, err)) }
	mr := multipart.NewReader(r.Body, params["boundary"])
	var files []*spooled
	defer func() {
		for _, f := range files {
			if f.tmp != "" {
				s.spool.remove(f.tmp)
			}
		}
	}()
	var meta *manifest.Manifest
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fail(err)
			return
		}
		switch part.FormName() {
		case "manifest":
			if meta != nil {
				s.fail(w, r, newErr(http.StatusBadRequest, manifest.CodeInvalidJSON, "more than one manifest part"))
				return
			}
			// The same strict decoding as POST /v1/uploads, without files.
			meta, err = manifest.DecodeHeader(part, s.opts.MaxManifestBytes)
			if err != nil {
				var me *manifest.Error
				if errors.As(err, &me) {
					me.Field = strings.TrimSuffix("manifest part: "+me.Field, ": ")
				}
				fail(err)
				return
			}
			// Refuse before a single file byte is spooled.
			if !s.mayPublishAs(w, r, meta.Producer) {
				return
			}
		case "file":
			if meta == nil {
				s.fail(w, r, newErr(http.StatusBadRequest, "invalid_form", "the manifest part must come before the file parts"))
				return
			}
			if s.opts.MaxFiles > 0 && len(files) >= s.opts.MaxFiles {
				s.fail(w, r, &manifest.Error{Code: manifest.CodeTooManyFiles, Field: "files",
					Message: fmt.Sprintf("more than %d file parts (server.max_files_per_package)", s.opts.MaxFiles)})
				return
			}
			name := rawFilename(part)
			if err := manifest.ValidatePath(name); err != nil {
				err.Field = "file part filename"
				s.fail(w, r, err)
				return
			}
			if err := mem.take(int64(len(name)) + fileOverhead); err != nil {
				s.fail(w, r, err)
				return
			}
			sp, err := s.spoolPart(part, name, mem, *buf)
			if sp != nil {
				files = append(files, sp)
			}
			if err != nil {
				fail(err)
				return
			}
		default:
			s.fail(w, r, newErr(http.StatusBadRequest, "invalid_form", fmt.Sprintf("unexpected form part %q (want manifest, file)", part.FormName())))
			return
		}
	}
	// The closing boundary must also be the end of the body: a body that
	// ends before its declared Content-Length is cut short, not complete.
	if n, err := io.Copy(io.Discard, io.LimitReader(r.Body, maxEpilogue+1)); err != nil {
		fail(err)
		return
	} else if n > maxEpilogue {
		s.fail(w, r, newErr(http.StatusBadRequest, "invalid_form", fmt.Sprintf("more than %d bytes after the closing boundary", maxEpilogue)))
		return
	}
	if meta == nil {
		s.fail(w, r, newErr(http.StatusBadRequest, "invalid_form", "no manifest part"))
		return
	}
	m := meta
	m.Files = []manifest.File{}
	for _, f := range files {
		m.Files = append(m.Files, f.file)
	}
	res, err := s.reg.Begin(r.Context(), m)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if res.Existing != nil {
		view, err := s.reg.GetPackage(r.Context(), res.Existing.Name, res.Existing.Version)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, viewJSON(view))
		return
	}
	id := res.Session.ID
	committed := false
	defer func() {
		if !committed {
			s.reg.Abort(r.Context(), id)
		}
	}()
	for _, need := range res.Needed {
		for _, f := range files {
			if f.file.SHA256 != need.SHA256 {
				continue
			}
			if err := s.uploadSpooled(r, id, f); err != nil {
				s.fail(w, r, err)
				return
			}
			break
		}
	}
	pkg, created, err := s.reg.Commit(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	committed = true
	s.writeCommitted(w, r, pkg, created)
}

func (s *Server) uploadSpooled(r *http.Request, id string, f *spooled) error {
	if f.tmp == "" {
		return s.reg.Upload(r.Context(), id, f.digest, f.file.Size, bytes.NewReader(f.mem))
	}
	fh, err := os.Open(f.tmp)
	if err != nil {
		return err
	}
	defer fh.Close()
	return s.reg.Upload(r.Context(), id, f.digest, f.file.Size, fh)
}

// Small file parts are kept in memory instead of a temporary file (small
// files are the common case of a one-request publish): each up to
// memSpoolMax, together at most memSpoolBudget per request, and only while
// server.form_memory_bytes has room; otherwise they are spooled to disk.
// fileOverhead is what one file's bookkeeping is charged besides its path
// (its record, hasher and multipart part), so a form of many tiny parts
// is bounded too. maxEpilogue is how much may follow the closing boundary.
const (
	memSpoolMax    = 256 << 10
	memSpoolBudget = 8 << 20
	fileOverhead   = 512
	maxEpilogue    = 1 << 10
)

// spoolBufs are the per-request read buffers of form parts.
var spoolBufs = sync.Pool{New: func() any { b := make([]byte, memSpoolMax+1); return &b }}

// spoolPart hashes a file part, keeping it in memory when it is small and
// memory is granted, and in a temporary file under SpoolDir otherwise.
func (s *Server) spoolPart(part io.Reader, path string, mem *formMemory, buf []byte) (*spooled, error) {
	h := digest.NewHasher()
	n0, err := io.ReadFull(part, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	head := buf[:n0]
	sp := &spooled{}
	n := int64(n0)
	if n <= memSpoolMax && mem.take(n) == nil {
		sp.mem = bytes.Clone(head)
		h.Write(head)
	} else {
		tmp, err := s.spool.create()
		if err != nil {
			return nil, err
		}
		sp.tmp = tmp.Name()
		w := io.MultiWriter(tmp, h)
		_, err = w.Write(head)
		if err == nil {
			var rest int64
			rest, err = io.CopyBuffer(w, part, buf)
			n += rest
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return sp, err
		}
	}
	sp.digest = h.Digest()
	sp.file = manifest.File{Path: path, Size: n, SHA256: sp.digest.Hex}
	return sp, nil
}

// rawFilename returns the filename parameter exactly as sent: Go's
// Part.FileName keeps only the last path element, but here the filename is
// the file's path inside the package.
func rawFilename(p *multipart.Part) string {
	_, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(params["filename"])
}

// formError maps a failure reading the form body: a cut-off or stalled
// body is 408 body_timeout, a body that ends before its Content-Length is
// size_mismatch, a body over the limit is 413; the messages never carry
// socket addresses.
func formError(r *http.Request, counted *countingBody, err error) error {
	var mbe *http.MaxBytesError
	var me *manifest.Error
	var ae *apiError
	if errors.As(err, &mbe) || errors.As(err, &me) || errors.As(err, &ae) {
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return bodyError(err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) && r.ContentLength >= 0 && counted != nil && counted.bytesRead() < r.ContentLength {
		return newErr(http.StatusBadRequest, "size_mismatch", fmt.Sprintf("the body ended after %d of its %d bytes (Content-Length); nothing was stored", counted.bytesRead(), r.ContentLength))
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return bodyError(err)
	}
	return newErr(http.StatusBadRequest, "invalid_form", "malformed multipart body: "+err.Error())
}
