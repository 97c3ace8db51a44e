package httpapi

import (
	"net/http"

	"govx/exchange"
	"govx/exchange/service"
)

// subject answers POST /v1/subjects/{person|organization}: the identifier in the body,
// one part per register, each decided on its own (see service.Subject).
func (h *Handler) subject(kind string) func(http.ResponseWriter, *http.Request, service.Caller) {
	return func(w http.ResponseWriter, r *http.Request, c service.Caller) {
		b, err := h.body(w, r)
		var cmd exchange.SubjectCmd
		if err == nil {
			cmd, err = service.ParseSubject(b)
		}
		if err != nil {
			writeError(w, h.svc.Rejected(r.Context(), c, exchange.ActionLookup, "", err))
			return
		}
		replied := false
		err = h.svc.Subject(r.Context(), c, kind, cmd, func(v *exchange.SubjectView) (int64, error) {
			replied = true
			return sendJSON(w, v)
		})
		if err != nil && !replied {
			writeError(w, err)
		}
	}
}

// licenceVerify answers POST /v1/licenses/verify (证照核验).
func (h *Handler) licenceVerify(w http.ResponseWriter, r *http.Request, c service.Caller) {
	b, err := h.body(w, r)
	var cmd exchange.LicenceVerifyCmd
	if err == nil {
		cmd, err = service.ParseLicenceVerify(b)
	}
	if err != nil {
		writeError(w, h.svc.Rejected(r.Context(), c, exchange.ActionVerify, "license.certificate", err))
		return
	}
	v, err := h.svc.VerifyLicence(r.Context(), c, cmd)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
