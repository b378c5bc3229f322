package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/net/html"
)

// voidElements never have an end tag.
var voidElements = map[string]bool{"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true,
	"img": true, "input": true, "link": true, "meta": true, "source": true, "track": true, "wbr": true}

// closesP are elements a browser would let end an open <p> silently.
var closesP = map[string]bool{"address": true, "article": true, "aside": true, "blockquote": true, "details": true,
	"div": true, "dl": true, "fieldset": true, "footer": true, "form": true, "h1": true, "h2": true, "h3": true,
	"h4": true, "h5": true, "h6": true, "header": true, "hr": true, "main": true, "nav": true, "ol": true, "p": true,
	"pre": true, "section": true, "table": true, "ul": true}

// checkHTML is a strict validity check of a page: it must start with
// <!DOCTYPE html>, tokenize without errors, close every non-void element in
// order (no implied end tags, no stray end tags), put no block element in a
// <p>, repeat no attribute within a tag and no id within the page, and parse
// with golang.org/x/net/html into a tree with one html, head and body.
// It returns every problem found.
func checkHTML(page []byte) []string {
	var problems []string
	add := func(line int, f string, a ...any) {
		problems = append(problems, fmt.Sprintf("line %d: %s", line, fmt.Sprintf(f, a...)))
	}
	z := html.NewTokenizer(bytes.NewReader(page))
	line := 1
	var stack []string
	ids := map[string]bool{}
	first := true
	for {
		tt := z.Next()
		raw := z.Raw()
		if tt == html.ErrorToken {
			if !errors.Is(z.Err(), io.EOF) {
				add(line, "tokenizer: %v", z.Err())
			}
			break
		}
		tok := z.Token()
		if first && tt != html.TextToken {
			if tt != html.DoctypeToken || !strings.EqualFold(tok.Data, "html") {
				add(line, "the page does not start with <!DOCTYPE html>")
			}
			first = false
		}
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			seen := map[string]bool{}
			for _, a := range tok.Attr {
				if seen[a.Key] {
					add(line, "<%s> repeats attribute %s", tok.Data, a.Key)
				}
				seen[a.Key] = true
				if a.Key == "id" {
					if ids[a.Val] {
						add(line, "id %q is used twice", a.Val)
					}
					ids[a.Val] = true
				}
			}
			if closesP[tok.Data] {
				for _, open := range stack {
					if open == "p" {
						add(line, "<%s> inside <p>", tok.Data)
					}
				}
			}
			if voidElements[tok.Data] {
				break
			}
			if tt == html.SelfClosingTagToken {
				add(line, "<%s/> is not a void element", tok.Data)
				break
			}
			stack = append(stack, tok.Data)
		case html.EndTagToken:
			if voidElements[tok.Data] {
				add(line, "</%s> closes a void element", tok.Data)
				break
			}
			if len(stack) == 0 || stack[len(stack)-1] != tok.Data {
				top := "nothing"
				if len(stack) > 0 {
					top = "<" + stack[len(stack)-1] + ">"
				}
				add(line, "</%s> while %s is open", tok.Data, top)
				// resynchronise on the matching element, if any
				for i := len(stack) - 1; i >= 0; i-- {
					if stack[i] == tok.Data {
						stack = stack[:i]
						break
					}
				}
				break
			}
			stack = stack[:len(stack)-1]
		}
		line += bytes.Count(raw, []byte("\n"))
	}
	if len(stack) > 0 {
		add(line, "elements never closed: %v", stack)
	}
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		add(0, "parse: %v", err)
		return problems
	}
	counts := map[string]int{}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			counts[n.Data]++
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	for _, el := range []string{"html", "head", "body", "title", "main"} {
		if counts[el] != 1 {
			add(0, "%d <%s> elements, want 1", counts[el], el)
		}
	}
	return problems
}

// pageLinks returns the href and src values of a page (form actions are
// POST targets, checked by the access tests).
func pageLinks(page []byte) []string {
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		return nil
	}
	var out []string
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				if a.Key == "href" || a.Key == "src" {
					out = append(out, a.Val)
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return out
}
