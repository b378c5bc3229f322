package web

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"strings"

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
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		s.fail(w, r, newErr(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"a one-request publish is multipart/form-data with a manifest part and file parts; use /v1/uploads for the staged protocol"))
		return
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var files []*spooled
	defer func() {
		for _, f := range files {
			if f.tmp != "" {
				os.Remove(f.tmp)
			}
		}
	}()
	var meta *manifest.Manifest
	memBudget := int64(memSpoolBudget)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.fail(w, r, badForm(err))
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
				s.fail(w, r, badForm(err))
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
			name := rawFilename(part)
			if err := manifest.ValidatePath(name); err != nil {
				err.Field = "file part filename"
				s.fail(w, r, err)
				return
			}
			sp, err := s.spool(part, name, &memBudget)
			if sp != nil {
				files = append(files, sp)
			}
			if err != nil {
				s.fail(w, r, badForm(err))
				return
			}
		default:
			s.fail(w, r, newErr(http.StatusBadRequest, "invalid_form", fmt.Sprintf("unexpected form part %q (want manifest, file)", part.FormName())))
			return
		}
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
// memSpoolMax, together at most memSpoolBudget per request.
const (
	memSpoolMax    = 256 << 10
	memSpoolBudget = 8 << 20
)

// spool hashes a file part, keeping it in memory when it is small and in a
// temporary file under SpoolDir otherwise.
func (s *Server) spool(part io.Reader, path string, budget *int64) (*spooled, error) {
	h := digest.NewHasher()
	head, err := io.ReadAll(io.LimitReader(part, memSpoolMax+1))
	if err != nil {
		return nil, err
	}
	sp := &spooled{}
	n := int64(len(head))
	if n <= memSpoolMax && n <= *budget {
		*budget -= n
		sp.mem = head
		h.Write(head)
	} else {
		if err := os.MkdirAll(s.opts.SpoolDir, 0o750); err != nil {
			return nil, err
		}
		tmp, err := os.CreateTemp(s.opts.SpoolDir, "form-*")
		if err != nil {
			return nil, err
		}
		sp.tmp = tmp.Name()
		w := io.MultiWriter(tmp, h)
		_, err = w.Write(head)
		if err == nil {
			var rest int64
			rest, err = io.CopyBuffer(w, part, make([]byte, 1<<20))
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

func badForm(err error) error {
	var mbe *http.MaxBytesError
	var me *manifest.Error
	if errors.As(err, &mbe) || errors.As(err, &me) {
		return err
	}
	return newErr(http.StatusBadRequest, "invalid_form", "malformed multipart body: "+err.Error())
}
