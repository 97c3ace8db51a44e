package client

import (
	"context"
	"net/http"

	"govx/exchange"
)

// SubjectPerson returns the subject view of a citizen ID number (一号式): the person's
// record, the organizations they represent, the parcels and the licences they hold,
// each part as the caller's agreements allow; withheld parts say why.
func (c *Client) SubjectPerson(ctx context.Context, cmd exchange.SubjectCmd) (*exchange.SubjectView, error) {
	var out exchange.SubjectView
	if err := c.do(ctx, http.MethodPost, "/v1/subjects/person", cmd, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SubjectOrganization returns the subject view of a USCC: the organization's record,
// its legal representative's, its parcels and its licences.
func (c *Client) SubjectOrganization(ctx context.Context, cmd exchange.SubjectCmd) (*exchange.SubjectView, error) {
	var out exchange.SubjectView
	if err := c.do(ctx, http.MethodPost, "/v1/subjects/organization", cmd, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// VerifyLicence checks a presented copy of a licence (its number and content digest)
// against the e-licence register (证照核验).
func (c *Client) VerifyLicence(ctx context.Context, cmd exchange.LicenceVerifyCmd) (*exchange.LicenceVerdict, error) {
	var out exchange.LicenceVerdict
	if err := c.do(ctx, http.MethodPost, "/v1/licenses/verify", cmd, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
