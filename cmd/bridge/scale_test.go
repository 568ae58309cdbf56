package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigScaleSettings: bad multi-instance settings name their variable
// and never echo a Redis password; good ones are taken.
func TestConfigScaleSettings(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(nil, envFrom(map[string]string{
		"VOICE_CA_FILE": notPEM,
		"REDIS_URL":     "mysql://u:secret@127.0.0.1:6379",
		"PUBLIC_URL":    "bridge-2",
	}))
	var names []string
	for _, e := range unwrapJoined(err) {
		var ce *ConfigError
		if errors.As(e, &ce) {
			names = append(names, ce.Var)
		}
	}
	if strings.Join(names, ",") != "VOICE_CA_FILE,REDIS_URL,PUBLIC_URL" {
		t.Fatalf("errors name %v, want VOICE_CA_FILE, REDIS_URL and PUBLIC_URL: %v", names, err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("the error shows the Redis password: %v", err)
	}

	c, err := loadConfig(nil, envFrom(map[string]string{"REDIS_URL": "redis://127.0.0.1:6379/0", "INSTANCE_ID": "b2", "PUBLIC_URL": "https://b2.example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisURL != "redis://127.0.0.1:6379/0" || c.instanceID() != "b2" || c.PublicURL != "https://b2.example.com" {
		t.Fatalf("config %+v", c)
	}
}

func unwrapJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}
